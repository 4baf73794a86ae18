"""
``torch.compile`` for QSM's training step and sampler: the checks of the arguments, and the options per device.

Compiling removes most of the per-operation overhead of the small tensors of a training step (the reverse chain's
``T`` steps, the losses' element-wise operations) and, on CUDA, replays the compiled functions as CUDA graphs
(the ``triton.cudagraphs`` option that ``mode="reduce-overhead"`` sets), so that a step costs a few graph launches
instead of hundreds of kernel launches.
"""

import inspect
from typing import Any

import torch as th

from sb3_qsm.common.utils import check_bool

# torch.compile's keyword arguments a user may pass through ``compile_kwargs`` (all but the function itself)
COMPILE_ARGUMENTS = tuple(name for name in inspect.signature(th.compile).parameters if name != "model")


def check_compile_args(compile: Any, compile_kwargs: Any) -> None:
    """
    Raise a ``ValueError`` naming the argument when ``compile`` or ``compile_kwargs`` is not usable, and when
    compilation is asked for on a platform that cannot compile (before any work is done).

    :param compile: Whether to compile (a bool)
    :param compile_kwargs: Keyword arguments for ``torch.compile``, or None
    """
    check_bool("compile", compile)
    if compile_kwargs is not None:
        if not isinstance(compile_kwargs, dict):
            raise ValueError(f"compile_kwargs must be a dict of torch.compile arguments or None, got {compile_kwargs!r}")
        unknown = sorted(set(compile_kwargs) - set(COMPILE_ARGUMENTS))
        if unknown:
            raise ValueError(
                f"compile_kwargs has {unknown}, which torch.compile does not take; it takes {', '.join(COMPILE_ARGUMENTS)}"
            )
        if not compile:
            raise ValueError(f"compile_kwargs={compile_kwargs!r} is given but compile=False: set compile=True to use it")
    if compile:
        _check_platform(compile_kwargs or {})


def _check_platform(compile_kwargs: dict[str, Any]) -> None:
    """
    :param compile_kwargs: The user's ``torch.compile`` arguments
    :raises ValueError: if this Python cannot run ``torch.compile``, or if its default backend (inductor) has no
        C++ compiler to build CPU kernels with
    """
    if not th._dynamo.is_dynamo_supported():
        raise ValueError(
            "compile=True: torch.compile does not run on this Python or platform (torch._dynamo.is_dynamo_supported() "
            "is False). Leave compile=False: the eager training step computes the same update."
        )
    if compile_kwargs.get("backend", "inductor") != "inductor":
        return
    try:
        from torch._inductor import cpp_builder

        cpp_builder.get_cpp_compiler()
    except Exception as error:  # the check names no single exception type across torch versions
        raise ValueError(
            f"compile=True: torch.compile's inductor backend needs a C++ compiler for CPU kernels, and found none "
            f"({error}). Install one (gcc or clang, with the Python headers), pass compile_kwargs=dict(backend=...) "
            "to use another backend, or leave compile=False: the eager training step computes the same update."
        ) from error


def compile_options(device: th.device, compile_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """
    :param device: The device the model runs on
    :param compile_kwargs: The user's ``torch.compile`` arguments, or None
    :return: The arguments for ``torch.compile``. Unless the user gives a ``mode`` (which torch.compile does not take
        together with ``options``), the options draw random numbers with PyTorch's own generator
        (``fallback_random``: the compiled step then draws the same numbers as the eager one, and on the CPU draws
        them several times faster than the compiler's generator), and on CUDA replay the compiled functions as CUDA
        graphs (``triton.cudagraphs``, what ``mode="reduce-overhead"`` sets); the user's options come on top.
    """
    arguments = dict(compile_kwargs or {})
    if "mode" in arguments:
        return arguments
    options: dict[str, Any] = {"fallback_random": True}
    if device.type == "cuda":
        options["triton.cudagraphs"] = True
    arguments["options"] = {**options, **(arguments.get("options") or {})}
    return arguments
