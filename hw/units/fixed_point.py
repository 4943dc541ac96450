"""Fixed-point helpers shared by the units: rounding shift and saturation, exactly as
``sw.numerics.requantize`` rounds (half up, then a flooring shift) and saturates.

:func:`round_shift_saturate` gives the same result as
``saturate(rounding_shift(value, shift), low, high)`` with no wide carry chain after the runtime
shift (see its docstring); the requantizer, GELU, i-exp and softmax use it. :func:`rounding_shift`
and :func:`saturate` are the reference forms the tests compare it with (the LayerNorm's output
stage keeps them: there the table form cost LUTs, docs/architecture.md)."""

from amaranth.hdl import Array, Cat, Const, Mux, Shape, Value, signed


def rounding_shift(value: Value, shift: Value) -> Value:
    """``(value + 2**(shift - 1)) >> shift``, no offset for shift 0; combinational.

    ``shift`` is unsigned; the sum is one bit wider than ``value`` and the offset, so it never
    overflows, and a signed ``value`` shifts arithmetically (floors)."""
    offset = (Const(1, 1) << shift) >> 1
    return (value + offset) >> shift


def saturate(value: Value, low: int, high: int) -> Value:
    """``value`` clamped to ``[low, high]``; combinational. Assign it to a signal of a width
    that holds the range."""
    return Mux(value > high, high, Mux(value < low, low, value))


def saturation_limits(value_shape: Shape, shift_width: int, low: int, high: int):
    """Per shift ``s``, the limits of ``value`` outside which ``rounding_shift`` saturates:
    ``(value + 2**(s-1)) >> s > high`` exactly when ``value >= high_limit(s)``, and ``< low``
    exactly when ``value < low_limit(s)``. Clamped to ``value_shape``'s range plus one, so both
    fit ``signed(width + 1)``. Returns two lists of ``2**shift_width`` integers."""
    shape = Shape.cast(value_shape)
    if shape.signed:
        value_min, value_max = -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    else:
        value_min, value_max = 0, (1 << shape.width) - 1
    low_limits, high_limits = [], []
    for s in range(1 << shift_width):
        offset = (1 << s) >> 1
        low_limits.append(max(low * (1 << s) - offset, value_min))
        high_limits.append(min((high + 1) * (1 << s) - offset, value_max + 1))
    return low_limits, high_limits


def round_shift_saturate(value: Value, shift: Value, low: int, high: int) -> Value:
    """``saturate(rounding_shift(value, shift), low, high)``; combinational.

    Bit-exact with the reference forms, built for timing: the saturation compares ``value``
    itself with limits looked up by ``shift`` (:func:`saturation_limits`, a table, no
    arithmetic), and the in-range result needs only ``out + 1`` bits of ``value >> (shift - 1)``
    (a multiplexer), plus one and halved: an adder as wide as the result, not as wide as
    ``value`` plus the offset. ``shift`` is unsigned; the result has the width of
    ``range(low, high + 1)``."""
    value = Value.cast(value)
    shift = Value.cast(shift)
    shape = value.shape()
    if not shape.signed:
        value = Cat(value, Const(0, 1)).as_signed()
    out_shape = Shape.cast(range(low, high + 1))
    out = out_shape.width
    low_limits, high_limits = saturation_limits(shape, len(shift), low, high)
    if len(value) < out + 2:                       # sign-extend: the window slices out + 1 bits
        value = Cat(value, value[-1].replicate(out + 2 - len(value))).as_signed()
    limit_shape = signed(len(value) + 1)
    low_limit = Array(Const(x, limit_shape) for x in low_limits)[shift]
    high_limit = Array(Const(x, limit_shape) for x in high_limits)[shift]
    # For shift >= 1: floor((value + 2**(s-1)) / 2**s) = (floor(value / 2**(s-1)) + 1) >> 1,
    # and its low ``out`` bits depend only on the low ``out + 1`` bits of the floor.
    window = (value >> (shift - 1)[:len(shift)])[:out + 1]
    halved = (window + 1)[1:out + 1]
    in_range = Mux(shift == 0, value[:out], halved)
    in_range = in_range.as_signed() if out_shape.signed else in_range
    return Mux(value >= high_limit, high, Mux(value < low_limit, low, in_range))
