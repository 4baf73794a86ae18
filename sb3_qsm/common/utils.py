"""Small helpers shared across the package: argument checks and batches of observations that may be dicts."""

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch as th

Batch = TypeVar("Batch", np.ndarray, th.Tensor)


def is_int_at_least(value: Any, minimum: int) -> bool:
    """
    :param value: An argument as the user passed it
    :param minimum: The smallest value allowed
    :return: Whether ``value`` is an integer (not a bool) of at least ``minimum``
    """
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


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
    return len(next(iter(observations.values())) if isinstance(observations, dict) else observations)
