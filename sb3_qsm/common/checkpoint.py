"""
Checks run on a saved model before Stable-Baselines3 loads it, so that a bad file fails with a clear message naming
the file and the problem, and the reading of its ``data`` entry without unpickling anything outside an allow-list.
"""

import contextlib
import glob
import gzip
import io
import json
import os
import pathlib
import pickle
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from typing import IO, Any, cast

import torch as th
from stable_baselines3.common.save_util import json_to_data, open_path
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_qsm.common.safe_pickle import UnsafePickleError, decode_entry, safe_load, torch_safe_globals

# The first bytes of a gzip stream (RFC 1952)
GZIP_MAGIC = b"\x1f\x8b"

# Entries that ``load`` rebuilds from others (``lr_schedule`` from ``learning_rate``): a refused one is left out
REBUILT_ENTRIES = ("lr_schedule",)


def _describe(path: Any) -> str:
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


def decode_checkpoint_data(
    stored: dict[str, Any], path: Any, custom_objects: dict[str, Any] | None = None, safe: bool = True
) -> tuple[dict[str, Any], list[str]]:
    """
    Decode a checkpoint's ``data`` entry (as :func:`read_checkpoint_json` returns it) without running any code: the
    entries SB3 pickled (spaces, policy class and arguments, schedules, action noise) go through the allow-listed
    unpickler of :mod:`sb3_qsm.common.safe_pickle`.

    :param stored: The checkpoint's ``data`` entry, parsed
    :param path: The checkpoint, for the messages
    :param custom_objects: Values that replace stored entries, which are then not decoded at all (as in ``load``)
    :param safe: Refuse an entry that names anything outside the allow-list, with a ``ValueError`` naming the entry
        and what it names. With ``safe=False`` such entries, and those that cannot be decoded, are only listed, for a
        caller that trusts the file and unpickles them itself (:func:`unpickle_entries`, SB3's ``load``), once it has
        checked what could be checked safely.
        ``lr_schedule`` is left out rather than refused, since ``load`` rebuilds it from ``learning_rate``.
    :return: The decoded entries, and the names of those left out
    :raises ValueError: for a refused or undecodable entry
    """
    decoded: dict[str, Any] = {}
    left_out: list[str] = []
    for key, item in stored.items():
        if custom_objects is not None and key in custom_objects:
            decoded[key] = custom_objects[key]
            continue
        try:
            decoded[key] = _decode(item, key, path)
        except UnsafePickleError as error:
            if safe and key not in REBUILT_ENTRIES:
                raise _refused(path, key, error) from error
            left_out.append(key)
        except ValueError:
            # Undecodable (a class renamed since, say): SB3's own unpickling of a trusted file warns and goes on
            if safe:
                raise
            left_out.append(key)
    return decoded, left_out


def decode_checkpoint_entry(stored: dict[str, Any], key: str, path: Any, default: Any = None) -> Any:
    """
    One entry of a checkpoint's ``data``, decoded without running code (see :func:`decode_checkpoint_data`).

    :param stored: The checkpoint's ``data`` entry, parsed (:func:`read_checkpoint_json`)
    :param key: The entry
    :param path: The checkpoint, for the messages
    :param default: Returned when the checkpoint has no such entry
    :return: The entry
    :raises ValueError: for an entry a safe load refuses or cannot decode
    """
    if key not in stored:
        return default
    try:
        return _decode(stored[key], key, path)
    except UnsafePickleError as error:
        raise _refused(path, key, error) from error


def _decode(item: Any, key: str, path: Any) -> Any:
    """
    :return: An entry of ``data`` as it was saved: as it is, or decoded by the allow-listed unpickler
    :raises UnsafePickleError: for an entry that names anything outside the allow-list
    :raises ValueError: for an entry that cannot be decoded
    """
    if not (isinstance(item, dict) and ":serialized:" in item):
        return item
    try:
        return decode_entry(item)
    except UnsafePickleError:
        raise
    except Exception as error:
        raise ValueError(
            f"Cannot load checkpoint {_describe(path)}: its entry {key!r} cannot be decoded ({error!r}); pass "
            f"custom_objects={{{key!r}: ...}} to replace it"
        ) from error


def _refused(path: Any, key: str, error: UnsafePickleError) -> ValueError:
    return ValueError(
        f"Cannot load checkpoint {_describe(path)} safely: its entry {key!r} {error}. Pass custom_objects={{{key!r}: "
        "...} to replace the entry, allow the class with sb3_qsm.add_safe_globals, or, only if you trust this file, "
        "load it with safe=False (which runs the code the file holds)."
    )


def unpickle_entries(stored: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """
    Unpickle entries of a checkpoint's ``data`` as Stable-Baselines3 does (``cloudpickle``), which runs any code they
    hold: only for a file the user trusts (``safe=False``).

    :param stored: The checkpoint's ``data`` entry, parsed (:func:`read_checkpoint_json`)
    :param keys: The entries
    :return: The entries, decoded
    """
    return json_to_data(json.dumps({key: stored[key] for key in keys}))


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


def read_pickle_file(path: str | pathlib.Path | io.BufferedIOBase, what: str) -> Any:
    """
    Read a pickle that SB3 saved (``save_to_pkl``: a replay buffer, say) without running code from it (see
    :mod:`sb3_qsm.common.safe_pickle`), gzip-compressed or not. A path without its ``.pkl`` suffix is found as SB3's
    ``load_from_pkl`` does.

    :param path: Path to the file, or an open binary file
    :param what: What the file should hold, for the messages ("replay buffer")
    :return: The object
    :raises ValueError: naming the file: missing, truncated or corrupt, or naming something a safe load refuses
    """
    name = _describe(path)
    try:
        with open_path(path, "r", suffix="pkl") as file:
            return safe_load(_decompressed(file))
    except UnsafePickleError as error:
        raise ValueError(
            f"Cannot load the {what} {name} safely: it {error}. Only if you trust this file, load it with safe=False "
            "(which runs the code the file holds)."
        ) from error
    except FileNotFoundError as error:
        raise ValueError(f"Cannot load the {what} {name}: no such file") from error
    except (
        EOFError,
        gzip.BadGzipFile,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
    ) as error:
        raise ValueError(f"Cannot load the {what} {name}: the file is truncated or corrupt ({error!r})") from error


def _decompressed(file: IO[bytes]) -> IO[bytes]:
    """
    :param file: An open binary file, at the start of a pickle or of a gzip-compressed one (as the benchmark runner
        keeps its replay buffers, ``replay_buffer.pkl.gz``)
    :return: The file itself, or its decompressed stream if it starts with gzip's magic number (a seekable file only)
    """
    if not file.seekable():
        return file
    start = file.read(len(GZIP_MAGIC))
    file.seek(-len(start), io.SEEK_CUR)
    return cast(IO[bytes], gzip.GzipFile(fileobj=file, mode="rb")) if start == GZIP_MAGIC else file


def load_vec_normalize(path: str | pathlib.Path, venv: VecEnv) -> VecNormalize:
    """
    ``VecNormalize.load`` without running code from the file: the statistics are read by the allow-listed unpickler
    (see :func:`read_pickle_file`), then wrapped around ``venv``.

    :param path: Path to the file ``VecNormalize.save`` wrote
    :param venv: The environment to normalise
    :return: The ``VecNormalize`` wrapper
    :raises ValueError: naming the file, if it does not hold ``VecNormalize`` statistics or cannot be read safely
    """
    vec_normalize = read_pickle_file(path, "VecNormalize statistics")
    if not isinstance(vec_normalize, VecNormalize):
        raise ValueError(f"{path} does not hold VecNormalize statistics (got {type(vec_normalize).__name__})")
    vec_normalize.set_venv(venv)
    return vec_normalize


def read_saved_policy(path: str | pathlib.Path | IO[bytes], device: th.device, extra: tuple[Any, ...]) -> dict[str, Any]:
    """
    Read what SB3's ``BaseModel.save`` writes (``{"state_dict": ..., "data": constructor arguments}``) with
    ``torch.load(weights_only=True)``, the constructor arguments' classes allowed from the allow-list of
    :mod:`sb3_qsm.common.safe_pickle` and ``extra``: no code from the file runs.

    :param path: Path to the file, or an open binary file
    :param device: Where to put the tensors
    :param extra: Classes allowed besides the allow-list (the policy's own)
    :return: The saved dictionary
    :raises ValueError: naming the file, for a missing or corrupt file or an object a safe load refuses
    """
    try:
        with th.serialization.safe_globals(torch_safe_globals(extra)):
            saved = th.load(path, map_location=device, weights_only=True)
    except FileNotFoundError as error:
        raise ValueError(f"Cannot load the policy {_describe(path)}: no such file") from error
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"Cannot load the policy {_describe(path)} safely: {error}. Only if you trust this file, load it with "
            "safe=False (which runs the code the file holds)."
        ) from error
    except RuntimeError as error:
        raise ValueError(f"Cannot load the policy {_describe(path)}: the file is truncated or corrupt ({error})") from error
    if not (isinstance(saved, dict) and isinstance(saved.get("data"), dict) and "state_dict" in saved):
        raise ValueError(f"Cannot load the policy {_describe(path)}: it is not a policy saved by Stable-Baselines3's save")
    return saved


@contextlib.contextmanager
def atomic_file(path: str | pathlib.Path, suffix: str | None = None) -> Iterator[io.BufferedWriter]:
    """
    A binary file to write that replaces ``path`` only once it is complete: the data goes to a temporary file in the
    same folder (``.<name>.<random>.tmp``), which is flushed to disk and renamed onto ``path`` (an atomic step on
    POSIX and Windows), so a process killed at any moment leaves either the previous file or the new one, never a
    partial one. The folder is created if missing; on an error the temporary file is removed and ``path`` left as it
    was; a killed save leaves its temporary file behind, which the next save of the same path removes (so two
    processes must not save to the same path at once, which no writer allows anyway). The file ends with the
    permissions writing it in place would give it: an existing file's own, a new one's from the umask.

    :param path: The file to write
    :param suffix: Appended as ``path.suffix`` when ``path`` has none, as SB3's ``save`` does (``"zip"``, ``"pkl"``)
    :return: The file to write to (it may be closed by the writer)
    """
    path = pathlib.Path(path)
    if suffix and path.suffix == "":
        path = pathlib.Path(f"{path}.{suffix}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary files of earlier saves of this path that were killed before their rename
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file readable by its owner alone: give it the permissions ``open(path, "wb")`` would
        os.chmod(temporary, _mode_of_written_file(path))
        with os.fdopen(descriptor, "wb") as file:
            yield file
        _flush_to_disk(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    _flush_to_disk(path.parent)


def _mode_of_written_file(path: pathlib.Path) -> int:
    """
    :param path: A file about to be written
    :return: The permission bits ``open(path, "wb")`` leaves it with: its own if it exists, otherwise ``0o666``
        less the process's umask
    """
    with contextlib.suppress(FileNotFoundError):
        return stat.S_IMODE(path.stat().st_mode)
    # The umask can only be read by setting it: set it back at once
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _flush_to_disk(path: str | pathlib.Path) -> None:
    """fsync a file, or a folder (so that a rename in it is on disk); folders cannot be opened on Windows"""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
