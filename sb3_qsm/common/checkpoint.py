"""
Checks run on a saved model before Stable-Baselines3 loads it, so that a bad file fails with a clear message naming
the file and the problem.
"""

import io
import json
import pathlib
import zipfile
from typing import Any

from stable_baselines3.common.save_util import json_to_data


def _describe(path: str | pathlib.Path | io.BufferedIOBase) -> str:
    return str(path) if isinstance(path, str | pathlib.Path) else repr(path)


def _resolve(path: str | pathlib.Path) -> pathlib.Path:
    # SB3 appends ".zip" when the given path does not exist (save_util.open_path)
    path = pathlib.Path(path)
    if not path.exists() and path.suffix != ".zip" and path.with_suffix(path.suffix + ".zip").exists():
        return path.with_suffix(path.suffix + ".zip")
    return path


def read_checkpoint_json(path: str | pathlib.Path | io.BufferedIOBase) -> dict[str, Any]:
    """
    Open a Stable-Baselines3 ``.zip`` checkpoint, verify the CRC of every member and parse its ``data`` entry as
    JSON, without unpickling anything (serialised objects stay base64 strings, next to their readable fields such
    as a space's ``shape``). File objects are rewound afterwards, so the caller can load from them.

    :param path: Path to the checkpoint, or an open binary file
    :return: The parsed ``data`` entry
    :raises ValueError: naming the file and the problem when it is missing, not a zip archive, truncated,
        corrupt, or not a Stable-Baselines3 checkpoint
    """
    return _read_data_entry(path)[1]


def _read_data_entry(path: str | pathlib.Path | io.BufferedIOBase) -> tuple[str, dict[str, Any]]:
    """
    :param path: Path to the checkpoint, or an open binary file
    :return: The checked ``data`` entry, as text and parsed (see :func:`read_checkpoint_json`)
    """
    name = _describe(path)
    if isinstance(path, str | pathlib.Path):
        path = _resolve(path)
        if not path.is_file():
            raise ValueError(f"Cannot load checkpoint {name}: no such file")
    start = path.tell() if isinstance(path, io.BufferedIOBase) else 0
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
            if bad_member is not None:
                raise ValueError(f"Cannot load checkpoint {name}: member {bad_member!r} is corrupt (CRC mismatch)")
            if "data" not in archive.namelist():
                raise ValueError(
                    f"Cannot load checkpoint {name}: it has no 'data' entry, so it is truncated, corrupt or not a "
                    "Stable-Baselines3 model file"
                )
            raw = archive.read("data").decode()
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"Cannot load checkpoint {name}: not a valid zip archive (truncated or corrupt): {error}") from error
    finally:
        if isinstance(path, io.BufferedIOBase):
            path.seek(start)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"Cannot load checkpoint {name}: its 'data' entry is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(f"Cannot load checkpoint {name}: its 'data' entry is not a JSON object")
    return raw, data


def read_checkpoint_data(
    path: str | pathlib.Path | io.BufferedIOBase, custom_objects: dict[str, Any] | None = None
) -> dict[str, Any]:
    """
    Check a Stable-Baselines3 ``.zip`` checkpoint (see :func:`read_checkpoint_json`) and decode its ``data`` entry.

    :param path: Path to the checkpoint, or an open binary file
    :param custom_objects: Values that replace stored entries before they are deserialised (as in ``load``)
    :return: The decoded ``data`` entry (hyperparameters, spaces, policy class, ...)
    :raises ValueError: as :func:`read_checkpoint_json`
    """
    return json_to_data(_read_data_entry(path)[0], custom_objects=custom_objects)


def check_policy_class(data: dict[str, Any], expected: type, algo_name: str, path: Any) -> None:
    """
    Raise a ``ValueError`` when a checkpoint holds a model of another algorithm.

    :param data: Decoded ``data`` entry of the checkpoint
    :param expected: Base class its policy must derive from
    :param algo_name: Name of the algorithm loading it (for the message)
    :param path: The checkpoint, for the message
    """
    policy_class = data.get("policy_class")
    if not (isinstance(policy_class, type) and issubclass(policy_class, expected)):
        found = getattr(policy_class, "__qualname__", repr(policy_class))
        module = getattr(policy_class, "__module__", "")
        raise ValueError(
            f"Cannot load checkpoint {_describe(path)} with {algo_name}: it holds a model whose policy is "
            f"{module}.{found}, not a {expected.__name__}. Load it with the algorithm that saved it."
        )


def with_values_of_older_archives(data: dict[str, Any], kwargs: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """
    An archive written before an argument existed holds no value for it, and ``load`` would give it today's default.
    Give it instead the value it trained with, the default of its day, unless the caller sets it.

    :param data: Decoded ``data`` entry of the checkpoint
    :param kwargs: The caller's extra arguments of ``load``
    :param arguments: Argument -> its value before it existed
    :return: The extra arguments to load with
    """
    return {**{name: value for name, value in arguments.items() if name not in data}, **kwargs}
