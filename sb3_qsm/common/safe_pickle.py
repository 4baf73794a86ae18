"""
Unpickling that runs no code: the pickles a Stable-Baselines3 checkpoint holds (its spaces, policy arguments and
schedules in the ``data`` entry, a saved replay buffer, a saved policy) are read with an unpickler that resolves only
the classes and functions of an allow-list, as ``torch.load(weights_only=True)`` does for tensors and the "Restricting
Globals" recipe of Python's ``pickle`` documentation describes. A pickle that names anything else (a function stored
by value, ``os.system``, a class of an unknown module) is refused before that name is even imported.

The allow-list holds what SB3, the RL Zoo and this package write: NumPy arrays, dtypes, scalars and random
generators, Gymnasium spaces, ``torch.device``, the classes of ``torch.nn`` modules and optimizers, SB3's feature
extractors, schedules, buffers, action noises, training-frequency types and ``VecNormalize`` statistics, the policy
classes of SB3, sb3-contrib and this package, and the zoo's linear schedule. Anything named there is constructed with
the file's arguments, so only classes whose construction does nothing but build an object belong in it (no file,
process or network access). Users add their own classes with :func:`add_safe_globals`, or replace an entry with
``custom_objects`` when loading.
"""

import base64
import importlib
import io
import pickle
import re
import sys
from collections.abc import Iterable
from typing import IO, Any

# Allowed globals that are not reachable as "<object.__module__>.<object.__qualname__>" of an importable object:
# NumPy 2 writes numpy._core, NumPy 1 wrote numpy.core (an alias of numpy._core under NumPy 2)
_NUMPY_NAMES = (
    "multiarray._reconstruct",
    "multiarray.scalar",
    "numeric._frombuffer",
)
# NumPy's scalar types (a dtype or the type of a scalar, as in an action noise's parameters)
_NUMPY_SCALARS = ("bool", "bool_", "float16", "float32", "float64", "complex64", "complex128")
_NUMPY_INTEGERS = tuple(f"{kind}{bits}" for kind in ("int", "uint") for bits in (8, 16, 32, 64))
_NAMED_GLOBALS = frozenset(
    {f"numpy.{package}.{name}" for package in ("core", "_core") for name in _NUMPY_NAMES}
    | {f"numpy.{name}" for name in (*_NUMPY_SCALARS, *_NUMPY_INTEGERS)}
    | {
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
        "numpy.random.bit_generator.SeedSequence",
        "numpy.random._generator.Generator",
        "numpy.random._pcg64.PCG64",
        "numpy.random._pcg64.PCG64DXSM",
        "numpy.random._mt19937.MT19937",
        "numpy.random._philox.Philox",
        "numpy.random._sfc64.SFC64",
        "numpy.random.mtrand.RandomState",
        "collections.OrderedDict",
        "collections.deque",
        "builtins.set",
        "builtins.frozenset",
        "builtins.slice",
        "builtins.complex",
        "torch.device",
        "rl_zoo3.utils.SimpleLinearSchedule",
        "stable_baselines3.common.vec_env.vec_normalize.VecNormalize",
        "stable_baselines3.common.running_mean_std.RunningMeanStd",
        "torch.float32",
        "torch.float64",
    }
)
# Modules whose classes (never their functions) a checkpoint may name: NumPy's dtype classes, Gymnasium's spaces,
# PyTorch's modules and optimizers, and SB3's building blocks
_CLASS_MODULES = (
    "numpy.dtypes",
    "gymnasium.spaces.",
    "torch.nn.modules.",
    "torch.optim.",
    "stable_baselines3.common.torch_layers",
    "stable_baselines3.common.buffers",
    "stable_baselines3.common.noise",
    "stable_baselines3.common.utils",
    "stable_baselines3.common.type_aliases",
    "stable_baselines3.her.",
)
# Policy modules (their classes build networks, nothing else): how a checkpoint names its policy class
_POLICY_MODULE = re.compile(r"(stable_baselines3|sb3_contrib|sb3_qsm)(\.\w+)*\.policies")
_user_globals: dict[str, Any] = {}


def global_name(obj: Any) -> str:
    """:return: The name under which pickle refers to a class or function: ``module.qualname``"""
    return f"{obj.__module__}.{obj.__qualname__}"


def add_safe_globals(objects: Iterable[Any]) -> None:
    """
    Allow classes (or functions) of your own in the pickles of the checkpoints this process loads safely, as
    ``torch.serialization.add_safe_globals`` does for ``torch.load``: a custom features extractor or activation
    named in ``policy_kwargs``, say. Only add what you would let a file you did not write construct.

    :param objects: The classes or functions to allow
    """
    for obj in objects:
        _user_globals[global_name(obj)] = obj


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a class or function that a safe load does not resolve."""

    def __init__(self, name: str):
        super().__init__(f"refers to {name}, which a safe load does not run or construct")
        self.name = name


def _allowed(module: str, name: str, extra: frozenset[str]) -> bool:
    full_name = f"{module}.{name}"
    if full_name in _NAMED_GLOBALS or full_name in extra or full_name in _user_globals:
        return True
    # A class of an allowed module (no dotted names, which are attribute lookups; checked once imported to be a
    # class), or a policy class of SB3, sb3-contrib or this package
    if "." in name:
        return False
    return any(module.startswith(prefix) for prefix in _CLASS_MODULES) or bool(_POLICY_MODULE.fullmatch(module))


class RestrictedUnpickler(pickle.Unpickler):
    """
    A ``pickle.Unpickler`` that resolves only allowed globals (see the module's documentation).

    :param file: The pickle
    :param extra: Further allowed globals, by their ``module.qualname``
    """

    def __init__(self, file: IO[bytes], extra: frozenset[str] = frozenset()):
        super().__init__(file)
        self.extra = extra

    def find_class(self, module: str, name: str) -> Any:
        if not _allowed(module, name, self.extra):
            raise UnsafePickleError(f"{module}.{name}")
        obj = super().find_class(module, name)
        full_name = f"{module}.{name}"
        named = full_name in _NAMED_GLOBALS or full_name in self.extra or full_name in _user_globals
        # Allowed by its module only: a class, never a function of that module
        if not named and not isinstance(obj, type):
            raise UnsafePickleError(full_name)
        return obj


def safe_loads(data: bytes, extra: Iterable[Any] = ()) -> Any:
    """
    :param data: A pickle
    :param extra: Classes allowed beyond the allow-list
    :return: The object
    :raises UnsafePickleError: if it names anything outside the allow-list
    """
    return safe_load(io.BytesIO(data), extra)


def safe_load(file: IO[bytes], extra: Iterable[Any] = ()) -> Any:
    """``safe_loads`` from a binary file."""
    return RestrictedUnpickler(file, frozenset(global_name(obj) for obj in extra)).load()


def decode_entry(entry: dict[str, Any], extra: Iterable[Any] = ()) -> Any:
    """
    :param entry: An entry of a checkpoint's ``data`` that SB3 serialised (``{":type:": ..., ":serialized:": ...}``)
    :param extra: Classes allowed beyond the allow-list
    :return: The object, decoded safely
    :raises UnsafePickleError: as :func:`safe_loads`
    """
    return safe_loads(base64.b64decode(entry[":serialized:"].encode()), extra)


def torch_safe_globals(extra: Iterable[Any] = ()) -> list[Any]:
    """
    The allow-list as objects, for ``torch.serialization.safe_globals`` around ``torch.load(weights_only=True)``,
    which reads the policies SB3's ``BaseModel.save`` writes (each object with the name a pickle gives it).

    :param extra: Classes allowed besides the allow-list (a policy's own class)
    :return: The objects, as ``(object, name)`` pairs
    """
    allowed: list[Any] = []
    for full_name in sorted(_NAMED_GLOBALS):
        module_name, _, name = full_name.rpartition(".")
        # NumPy 1's numpy.core names NumPy 2's numpy._core objects; import the latter only (the former warns)
        module = _imported(module_name.replace("numpy.core.", "numpy._core."))
        if module is not None and hasattr(module, name):
            allowed.append((getattr(module, name), full_name))
    for prefix in _CLASS_MODULES:
        _imported(prefix.rstrip("."))
        for module_name, module in list(sys.modules.items()):
            if module_name.startswith(prefix) and module is not None:
                allowed += [obj for obj in vars(module).values() if isinstance(obj, type) and obj.__module__ == module_name]
    return [*allowed, *_user_globals.values(), *extra]


def _imported(module_name: str) -> Any:
    """
    :return: The module, imported, or None if it cannot be or its package is not imported in this process (the RL
        Zoo's, say: heavy to import, and none of its objects to load then)
    """
    if module_name.split(".")[0] not in sys.modules:
        return None
    try:
        return importlib.import_module(module_name)
    except ImportError:
        return None
