"""Constructor argument checks shared by the hardware components, with the project's messages."""

from __future__ import annotations


def check_positive(value, what: str) -> int:
    """Return ``value`` if it is a positive integer, else raise ``TypeError``/``ValueError``.

    >>> check_positive(0, "Array rows")
    Traceback (most recent call last):
    ...
    ValueError: Array rows must be a positive integer, not 0
    """
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be a positive integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value}")
    return value
