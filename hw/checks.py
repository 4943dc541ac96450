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


def check_fields(layout, values: dict, unit: str) -> None:
    """Raise ``ValueError`` naming the first of ``values`` that does not fit its unsigned field
    of the ``amaranth.lib.data`` ``layout``."""
    from amaranth.hdl import Shape
    for name, value in values.items():
        width = Shape.cast(layout[name].shape).width
        if not 0 <= int(value) < (1 << width):
            raise ValueError(f"{unit} constant {name} = {value} does not fit {width} unsigned "
                             f"bits")
