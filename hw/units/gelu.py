"""GELU unit: I-BERT's integer GELU with output requantization on ``lanes`` values per cycle."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_fields, check_positive
from hw.units.fixed_point import round_shift_saturate
from sw.config import AcceleratorConfig
from sw.cycle_model.units import GELU_LATENCY, GeluTiming
from sw.golden.kernels import GeluConstants, gelu_constants
from sw.numerics import SHIFT_WIDTH


def gelu_constants_layout(*, in_width: int, frac_bits: int,
                          multiplier_width: int) -> data.StructLayout:
    """The runtime constants of a GELU unit (the integers of ``GeluConstants``)."""
    return data.StructLayout({
        "clip_width": range(in_width + 1),
        "erf_multiplier": unsigned(multiplier_width),
        "erf_shift": unsigned(SHIFT_WIDTH),
        "erf_b": unsigned(frac_bits + 1),
        "erf_c": unsigned(2 * frac_bits + 2),
        "multiplier": unsigned(multiplier_width),
        "shift": unsigned(SHIFT_WIDTH),
    })


class Gelu(wiring.Component):
    """``y = gelu_int(x)`` (``sw.golden.kernels``) on ``lanes`` values per transfer.

    Fully pipelined: one transfer per cycle in steady state, ``latency`` (``GELU_LATENCY``,
    9) register stages, the whole pipeline stalls while the output is not ready. The lanes are
    independent; a partial last beat needs no care (its unused lanes produce values nobody
    reads).

    Steps, one per stage: ``q = saturate(x, clip_width)``; ``q * erf_multiplier``;
    ``t = requantize(.., erf_shift)`` saturated to ``F + 3`` bits;
    ``d = min(|t|, erf_b) - erf_b``; ``s = d**2``; ``h = erf_c + sign(t) (erf_c - s)``; ``q * h``;
    ``* multiplier``; round, shift, saturate to ``out_width``.

    Parameters
    ----------
    lanes, in_width, out_width, frac_bits, multiplier_width : int

    src_loc_at : int
        Stack frames to skip when Amaranth attributes an unused unit (``from_config`` uses 1).

    Members
    -------
    constants : In(gelu_constants_layout(...))
        Stable while values are in flight.
    i : In(stream.Signature(ArrayLayout(signed(in_width), lanes)))
    o : Out(stream.Signature(ArrayLayout(signed(out_width), lanes)))
    """

    def __init__(self, *, lanes: int, in_width: int, out_width: int, frac_bits: int,
                 multiplier_width: int,
                 src_loc_at: int = 0):
        self._lanes = check_positive(lanes, "Lanes")
        self._in_width = check_positive(in_width, "Input width")
        self._out_width = check_positive(out_width, "Output width")
        self._frac_bits = check_positive(frac_bits, "Fraction bits")
        self._multiplier_width = check_positive(multiplier_width, "Multiplier width")
        self._timing = GeluTiming(lanes)
        super().__init__({
            "constants": In(gelu_constants_layout(in_width=in_width, frac_bits=frac_bits,
                                                  multiplier_width=multiplier_width)),
            "i": In(stream.Signature(data.ArrayLayout(signed(in_width), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_width), lanes))),
        })

    @classmethod
    def from_config(cls, config: AcceleratorConfig) -> "Gelu":
        """The unit the encoder layer needs: GELU of the int8 FC1 output (``data_width``)."""
        hw = config.hardware
        return cls(src_loc_at=1, lanes=hw.gelu_lanes, in_width=hw.data_width,
                   out_width=hw.data_width,
                   frac_bits=gelu_constants(1.0, 1.0).frac_bits,
                   multiplier_width=hw.multiplier_width)

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def timing(self) -> GeluTiming:
        return self._timing

    @property
    def latency(self) -> int:
        """Cycles from a transfer in to its transfer out (no back-pressure)."""
        return self._timing.latency

    def constant_values(self, constants: GeluConstants) -> dict:
        """The ``constants`` port's field values for golden ``constants``.

        Raises
        ------
        ValueError
            If the constants were made for other widths or do not fit the port.
        """
        c = constants
        if (c.frac_bits, c.out_width) != (self._frac_bits, self._out_width) or \
                c.in_width > self._in_width:
            raise ValueError(f"GELU constants for frac_bits {c.frac_bits}, widths {c.in_width}"
                             f"->{c.out_width} do not fit a unit of frac_bits {self._frac_bits}, "
                             f"widths {self._in_width}->{self._out_width}")
        values = {"clip_width": c.clip_width, "erf_multiplier": c.erf_multiplier,
                  "erf_shift": c.erf_shift, "erf_b": c.erf_b, "erf_c": c.erf_c,
                  "multiplier": c.multiplier, "shift": c.shift}
        check_fields(self.signature.members["constants"].shape, values, "GELU")
        if not 2 <= c.clip_width:
            raise ValueError(f"GELU clip_width must be at least 2, not {c.clip_width}")
        return values

    def elaborate(self, platform):
        m = Module()
        f, lanes = self._frac_bits, self._lanes
        k = self.constants
        valid = [Signal(name=f"valid_{stage}") for stage in range(GELU_LATENCY)]
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance),
                     self.o.valid.eq(valid[-1])]
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid)]
            m.d.sync += [valid[n].eq(valid[n - 1]) for n in range(1, GELU_LATENCY)]

        # erf_b - 1, registered: the constants are stable while values are in flight, and the
        # first value needs it in its fifth stage.
        erf_b_less_one = Signal(signed(f + 2))
        twice_erf_c = Signal(2 * f + 3)                   # likewise 2 erf_c, by its sixth
        m.d.sync += [erf_b_less_one.eq(k.erf_b - 1), twice_erf_c.eq(k.erf_c << 1)]
        half_range = Signal(self._in_width + 1)           # 2**(clip_width - 1)
        m.d.comb += half_range.eq((Const(1, self._in_width + 1) << k.clip_width) >> 1)
        t_limit = 1 << (f + 2)
        out_low, out_high = -(1 << (self._out_width - 1)), (1 << (self._out_width - 1)) - 1
        mw = self._multiplier_width
        for lane in range(lanes):
            def reg(shape, name):
                return Signal(shape, name=f"{name}_{lane}")
            q = [reg(signed(self._in_width), f"q{stage}") for stage in range(6)]
            product = reg(signed(self._in_width + mw + 1), "erf_product")
            t = reg(signed(f + 3), "t")
            square = reg(unsigned(2 * f + 2), "square")
            sign = [reg(signed(2), f"sign{stage}") for stage in range(2)]
            one_plus_erf = reg(unsigned(2 * f + 3), "one_plus_erf")
            gated = reg(signed(self._in_width + 2 * f + 4), "gated")
            scaled = reg(signed(self._in_width + 2 * f + 4 + mw + 1), "scaled")
            x = self.i.payload[lane]
            # min(|t|, erf_b) - erf_b <= 0 is |t| - erf_b where that is negative, else 0; both
            # signs of |t| - erf_b are formed from t at once (t - erf_b, ~t - (erf_b - 1)), so
            # one carry chain precedes the register.
            over = reg(signed(f + 5), "over")               # |t| - erf_b
            distance = reg(signed(f + 4), "distance")
            m.d.comb += over.eq(Mux(t[-1], ~t - erf_b_less_one, t - k.erf_b))
            with m.If(advance):
                with m.If(x >= half_range):
                    m.d.sync += q[0].eq(half_range - 1)
                with m.Elif(x < -half_range):
                    m.d.sync += q[0].eq(-half_range)
                with m.Else():
                    m.d.sync += q[0].eq(x)
                m.d.sync += [
                    product.eq(q[0] * k.erf_multiplier), q[1].eq(q[0]),
                    t.eq(round_shift_saturate(product, k.erf_shift, -t_limit, t_limit - 1)),
                    q[2].eq(q[1]),
                    distance.eq(Mux(over[-1], over, 0)),
                    sign[0].eq((t > 0) - (t < 0)), q[3].eq(q[2]),
                    square.eq(distance * distance), sign[1].eq(sign[0]), q[4].eq(q[3]),
                    # erf_c + sign (erf_c - s): 2 erf_c - s, s or erf_c by the sign
                    one_plus_erf.eq(Mux(sign[1] > 0, twice_erf_c - square,
                                        Mux(sign[1] < 0, square, k.erf_c))), q[5].eq(q[4]),
                    gated.eq(q[5] * one_plus_erf),
                    scaled.eq(gated * k.multiplier),
                    self.o.payload[lane].eq(
                        round_shift_saturate(scaled, k.shift, out_low, out_high)),
                ]
        return m

