"""Small helpers shared across the package: argument checks and batches of observations that may be dicts."""

import math
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch as th

Batch = TypeVar("Batch", np.ndarray, th.Tensor)


def is_int_at_least(value: Any, minimum: int) -> bool:
    """
    :param value: An argument as the user passed it
    :param minimum: The smallest value allowed
    :return: Whether ``value`` is an integer (Python's or NumPy's, not a bool) of at least ``minimum``
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_) and int(value) >= minimum


def is_real(value: Any) -> bool:
    """
    :param value: An argument as the user passed it
    :return: Whether ``value`` is a finite real number (Python's or NumPy's, not a bool)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_) and math.isfinite(value)


def check_bool(name: str, value: Any) -> None:
    """
    :param name: The argument's name, for the error
    :param value: The argument as the user passed it
    :raises ValueError: unless ``value`` is True or False (Python's or NumPy's)
    """
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def check_real(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False) -> None:
    """
    Raise a ``ValueError`` naming the argument unless it is a finite real number in ``[low, high]`` (``(low, high]``
    with ``low_open``): strings, None, bools, NaN and infinities included.

    :param name: The argument's name
    :param value: Its value
    :param low: The smallest value allowed
    :param high: The largest value allowed
    :param low_open: Whether ``low`` itself is excluded
    """
    if is_real(value) and (value > low if low_open else value >= low) and value <= high:
        return
    bound = f"> {low:g}" if low_open else f">= {low:g}"
    interval = bound if high == math.inf else f"{bound} and <= {high:g}"
    raise ValueError(f"{name} must be a finite number {interval}, got {value!r}")


def map_observations(function: Callable[[Any], Any], observations: Any) -> Any:
    """
    Apply ``function`` to a batch of observations, or to every entry of a batch of ``Dict`` observations.

    :param function: Array or tensor -> array or tensor
    :param observations: An array or tensor, or a dict of them
    :return: ``function(observations)``, or the dict of ``function(entry)``
    """
    if isinstance(observations, dict):
        return {key: function(value) for key, value in observations.items()}
    return function(observations)


def repeat_rows(observations: Any, n: int) -> Any:
    """
    Repeat every observation of a batch ``n`` times in a row: rows ``[o1, o2]`` become ``[o1, ..., o1, o2, ..., o2]``.

    :param observations: A batch (arrays or tensors, or a dict of them)
    :param n: Number of copies of each row
    :return: The batch of ``n`` times as many rows, of the same kind
    """

    def repeat(batch: Batch) -> Batch:
        return batch.repeat_interleave(n, dim=0) if isinstance(batch, th.Tensor) else np.repeat(batch, n, axis=0)

    return map_observations(repeat, observations)


def n_observations(observations: Any) -> int:
    """
    :param observations: A batch (arrays or tensors, or a dict of them)
    :return: Its number of rows
    """
    first = next(iter(observations.values())) if isinstance(observations, dict) else observations
    # A tensor's shape, not len(): an exported graph keeps its batch dimension symbolic
    return first.shape[0] if isinstance(first, th.Tensor) else len(first)


def where_rows(mask: th.Tensor, first: Any, second: Any) -> Any:
    """
    Rows of one batch where ``mask`` holds, of another batch of the same size elsewhere.

    :param mask: One boolean per row, shape ``(batch,)``
    :param first: A batch of tensors, or a dict of them
    :param second: A batch of the same kind and shape
    :return: The merged batch, of the same kind and shape
    """
    if isinstance(first, dict):
        return {key: where_rows(mask, value, second[key]) for key, value in first.items()}
    return th.where(mask.view(-1, *([1] * (first.dim() - 1))), first, second)


def cat_rows(first: Any, second: Any) -> Any:
    """
    :param first: A batch of tensors, or a dict of them
    :param second: A batch of the same kind
    :return: The rows of ``first`` followed by those of ``second``, of the same kind
    """
    if isinstance(first, dict):
        return {key: cat_rows(value, second[key]) for key, value in first.items()}
    return th.cat([first, second])
