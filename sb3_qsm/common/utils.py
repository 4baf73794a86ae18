"""Small helpers shared by the argument checks."""

from typing import Any


def is_int_at_least(value: Any, minimum: int) -> bool:
    """
    :param value: An argument as the user passed it
    :param minimum: The smallest value allowed
    :return: Whether ``value`` is an integer (not a bool) of at least ``minimum``
    """
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
