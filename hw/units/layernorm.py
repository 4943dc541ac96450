"""LayerNorm unit: integer LayerNorm (integer square root) over rows of the hidden size."""

import inspect

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.checks import check_fields, check_positive
from hw.units.fixed_point import saturate
from hw.units.isqrt import IntegerSqrt
from hw.units.reciprocal import PowerOfTwoReciprocal
from hw.units.row_walker import add_counter, add_row_walker, lane_mask, row_shape
from sw.config import AcceleratorConfig
from sw.cycle_model.units import (LAYERNORM_EMIT_LATENCY, LAYERNORM_VARIANCE_LATENCY,
                                  LayerNormTiming, layernorm_cycles, unit_timings)
from sw.golden.kernels import LayerNormConstants, layernorm_constants
from sw.numerics import SHIFT_WIDTH

#: Signed width of a quantized beta: ``layernorm_constants`` keeps ``|beta| < 2**40``.
BETA_WIDTH = 41


def layernorm_constants_layout(*, max_len: int, multiplier_width: int) -> data.StructLayout:
    """The per-job constants of a LayerNorm unit (gamma and beta go through ``affine``)."""
    return data.StructLayout({
        "length": range(max_len + 1),
        "multiplier": unsigned(multiplier_width),
        "shift": unsigned(SHIFT_WIDTH),
    })


def affine_layout(*, lanes: int, max_beats: int, gamma_width: int) -> data.StructLayout:
    """One write of the gamma / beta memory: channels ``addr * lanes + j`` in lane ``j``."""
    return data.StructLayout({
        "addr": range(max_beats),
        "gamma": data.ArrayLayout(signed(gamma_width), lanes),
        "beta": data.ArrayLayout(signed(BETA_WIDTH), lanes),
    })


class LayerNorm(wiring.Component):
    """``layernorm_int`` (``sw.golden.kernels``) over rows of ``length`` values, ``lanes``
    values per transfer.

    Rows arrive as beats like the softmax's (``Softmax``); the last beat's lanes past
    ``length`` are ignored and are 0 in the output. Two walkers and ``slots`` row buffers
    overlap rows (``sw.cycle_model.units``): A fills a slot while it sums ``x`` and ``x**2``;
    the row's ``var = d * sum(x**2) - sum(x)**2`` (which equals the golden
    ``sum(c**2) // d``, since ``sum(c**2) = d * var`` exactly), ``std = max(isqrt(var), 1)``
    and ``R = 2**k // std`` go through a pipeline; C reads the slot again and computes
    ``c = d * x - sum(x)``, ``n = (c << P) // std`` as ``q = ((c << P) * R) >> k`` corrected
    by one step from the remainder ``(c << P) - q * std`` (exact because ``|c << P| < 2**k``),
    and ``requantize(n * gamma + beta, multiplier, shift)``.

    Parameters
    ----------
    lanes, max_len : int
        Lanes, and the longest row (the config's hidden size).
    in_width, norm_bits, gamma_width, out_width, multiplier_width : int

    src_loc_at : int
        Stack frames to skip when Amaranth attributes an unused unit (``from_config`` uses 1).

    Members
    -------
    constants : In(layernorm_constants_layout(...))
        Row length ``d``, multiplier and shift; stable while rows are in flight.
    affine : In(stream.Signature(affine_layout(...)))
        Writes of the per-channel gamma and beta, always ready; only while no row is in
        flight.
    i : In(stream.Signature(ArrayLayout(signed(in_width), lanes)))
    o : Out(stream.Signature(ArrayLayout(signed(out_width), lanes)))
    """

    def __init__(self, *, lanes: int, max_len: int, in_width: int, norm_bits: int,
                 gamma_width: int, out_width: int, multiplier_width: int,
                 src_loc_at: int = 0):
        self._lanes = check_positive(lanes, "Lanes")
        self._max_len = check_positive(max_len, "Longest row")
        self._in_width = check_positive(in_width, "Input width")
        self._norm_bits = norm_bits
        self._gamma_width = check_positive(gamma_width, "Gamma width")
        self._out_width = check_positive(out_width, "Output width")
        self._multiplier_width = check_positive(multiplier_width, "Multiplier width")
        self._timing = LayerNormTiming(lanes, max_len, in_width, norm_bits)
        super().__init__({
            "constants": In(layernorm_constants_layout(max_len=max_len,
                                                       multiplier_width=multiplier_width)),
            "affine": In(stream.Signature(affine_layout(
                lanes=lanes, max_beats=self._timing.max_beats, gamma_width=gamma_width))),
            "i": In(stream.Signature(data.ArrayLayout(signed(in_width), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_width), lanes))),
        })

    @classmethod
    def from_config(cls, config: AcceleratorConfig) -> "LayerNorm":
        """The unit the encoder layer needs: rows of ``hidden_size`` int16 residual values
        (``RESIDUAL_BITS``) to ``data_width``-bit outputs, golden default norm and gamma bits."""
        hw = config.hardware
        timing = unit_timings(config)[2]
        return cls(src_loc_at=1, lanes=timing.lanes, max_len=timing.max_len,
                   in_width=timing.in_width, norm_bits=timing.norm_bits,
                   gamma_width=_default_gamma_width(), out_width=hw.data_width,
                   multiplier_width=hw.multiplier_width)

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def timing(self) -> LayerNormTiming:
        return self._timing

    @property
    def latency(self) -> int:
        """Cycles from a lone full-length row's last input transfer to its last output."""
        return layernorm_cycles(self._timing, rows=1, length=self._max_len).latency

    def constant_values(self, constants: LayerNormConstants) -> dict:
        """The ``constants`` port's field values (rows of ``constants.dim`` values).

        Raises
        ------
        ValueError
            If the constants were made for other widths or do not fit the unit.
        """
        c = constants
        if (c.norm_bits, c.out_width) != (self._norm_bits, self._out_width) or \
                c.in_width > self._in_width:
            raise ValueError(f"LayerNorm constants for norm_bits {c.norm_bits}, widths "
                             f"{c.in_width}->{c.out_width} do not fit a unit of norm_bits "
                             f"{self._norm_bits}, widths {self._in_width}->{self._out_width}")
        if not 2 <= c.dim <= self._max_len:
            raise ValueError(f"LayerNorm rows must have 2..{self._max_len} values, not {c.dim}")
        values = {"length": c.dim, "multiplier": c.multiplier, "shift": c.shift}
        check_fields(self.signature.members["constants"].shape, values, "LayerNorm")
        low, high = -(1 << (self._gamma_width - 1)), 1 << (self._gamma_width - 1)
        if c.gamma.min() < low or c.gamma.max() >= high:
            raise ValueError(f"LayerNorm gamma exceeds {self._gamma_width}-bit signed integers")
        if abs(c.beta).max() >= 1 << (BETA_WIDTH - 1):
            raise ValueError(f"LayerNorm beta exceeds {BETA_WIDTH}-bit signed integers")
        return values

    def affine_words(self, constants: LayerNormConstants) -> list[dict]:
        """The ``affine`` writes that load ``constants.gamma`` and ``beta``."""
        lanes, words = self._lanes, []
        gamma, beta = [int(v) for v in constants.gamma], [int(v) for v in constants.beta]
        for addr in range(-(-len(gamma) // lanes)):
            part = slice(addr * lanes, (addr + 1) * lanes)
            pad = lanes - len(gamma[part])
            words.append({"addr": addr, "gamma": gamma[part] + [0] * pad,
                          "beta": beta[part] + [0] * pad})
        return words

    def elaborate(self, platform):
        m = Module()
        lanes, width, p = self._lanes, self._in_width, self._norm_bits
        timing = self._timing
        slots, max_beats = timing.slots, timing.max_beats
        k = self.constants
        beats, last_lanes = row_shape(m, k.length, lanes, max_beats)
        length_bits = timing.length_bits
        sum_width = width + length_bits + 1                 # signed sum(x)
        square_width = 2 * width + length_bits               # unsigned sum(x**2)
        var_width = timing.variance_width
        std_width = (var_width + 1) // 2
        shift_k = timing.reciprocal_shift

        m.submodules.rows = rows = Memory(shape=data.ArrayLayout(signed(width), lanes),
                                          depth=slots * max_beats, init=[])
        fill_port, emit_port = rows.write_port(), rows.read_port()
        m.submodules.affine_mem = affine_mem = Memory(
            shape=data.StructLayout({"gamma": data.ArrayLayout(signed(self._gamma_width), lanes),
                                     "beta": data.ArrayLayout(signed(BETA_WIDTH), lanes)}),
            depth=max_beats, init=[])
        affine_write, affine_read = affine_mem.write_port(), affine_mem.read_port()
        m.d.comb += [affine_write.addr.eq(self.affine.payload.addr),
                     affine_write.data.gamma.eq(self.affine.payload.gamma),
                     affine_write.data.beta.eq(self.affine.payload.beta),
                     affine_write.en.eq(self.affine.valid), self.affine.ready.eq(1)]
        row_sum = Array(Signal(signed(sum_width), name=f"row_sum_{n}") for n in range(slots))
        row_std = Array(Signal(std_width, name=f"row_std_{n}") for n in range(slots))
        row_recip = Array(Signal(shift_k + 1, name=f"row_recip_{n}") for n in range(slots))

        transfer = self.i.valid & self.i.ready
        out_advance, freed = Signal(), Signal()
        fill_start, stats_done, emit_start = Signal(), Signal(), Signal()
        free = add_counter(m, "free_slots", limit=slots, init=slots, up=freed, down=fill_start)
        ready = add_counter(m, "ready_rows", limit=slots, init=0, up=stats_done,
                            down=emit_start)

        # ---- A: fill a slot, sum x and x**2 --------------------------------------------------
        fill = add_row_walker(m, "fill", slots=slots, max_beats=max_beats, beats=beats,
                              step=self.i.valid, can_start=free > 0)
        m.d.comb += [fill_start.eq(fill.start), self.i.ready.eq(fill.active),
                     fill_port.addr.eq(fill.slot * max_beats + fill.beat),
                     fill_port.data.eq(self.i.payload), fill_port.en.eq(transfer)]
        fill_mask = lane_mask(m, "fill_mask", lanes=lanes, beat=fill.beat, beats=beats,
                              last_lanes=last_lanes)
        beat_sum = Signal(signed(sum_width))
        beat_squares = Signal(square_width)
        values = [Mux(fill_mask[lane], self.i.payload[lane], 0) for lane in range(lanes)]
        m.d.comb += [beat_sum.eq(sum(values)), beat_squares.eq(sum(v * v for v in values))]
        running_sum, running_squares = Signal(signed(sum_width)), Signal(square_width)
        total_sum, total_squares = Signal(signed(sum_width)), Signal(square_width)
        m.d.comb += [total_sum.eq(Mux(fill.beat == 0, 0, running_sum) + beat_sum),
                     total_squares.eq(Mux(fill.beat == 0, 0, running_squares) + beat_squares)]
        with m.If(transfer):
            m.d.sync += [running_sum.eq(total_sum), running_squares.eq(total_squares)]

        # ---- row statistics: variance, square root, reciprocal --------------------------------
        # Stages: the row's sums; ``d * sum(x**2)`` and ``sum(x)**2``; their difference.
        slot_bits = max(1, (slots - 1).bit_length())
        stages = LAYERNORM_VARIANCE_LATENCY
        v_valid = [Signal(name=f"var_valid_{n}") for n in range(stages)]
        v_slot = [Signal(slot_bits, name=f"var_slot_{n}") for n in range(stages)]
        v_sum = [Signal(signed(sum_width), name=f"var_sum_{n}") for n in range(stages)]
        row_squares = Signal(square_width)
        scaled_squares = Signal(square_width + length_bits)
        squared_sum = Signal(2 * sum_width)
        variance = Signal(var_width)
        m.d.sync += [v_valid[0].eq(fill.finishing), v_slot[0].eq(fill.slot),
                     v_sum[0].eq(total_sum), row_squares.eq(total_squares),
                     scaled_squares.eq(k.length * row_squares),
                     squared_sum.eq(v_sum[0] * v_sum[0]),
                     variance.eq(scaled_squares - squared_sum)]
        for n in range(1, stages):
            m.d.sync += [v_valid[n].eq(v_valid[n - 1]), v_slot[n].eq(v_slot[n - 1]),
                         v_sum[n].eq(v_sum[n - 1])]
        m.submodules.isqrt = isqrt = IntegerSqrt(width=var_width,
                                                 tag_width=slot_bits + sum_width)
        m.d.comb += [isqrt.valid.eq(v_valid[-1]), isqrt.operand.eq(variance),
                     isqrt.tag.eq(v_slot[-1] | (v_sum[-1].as_unsigned() << slot_bits))]
        std = Signal(std_width)
        m.d.comb += std.eq(Mux(isqrt.root == 0, 1, isqrt.root))
        m.submodules.reciprocal = divider = PowerOfTwoReciprocal(
            divisor_width=std_width, numerator_bits=shift_k + 1,
            tag_width=slot_bits + sum_width + std_width)
        m.d.comb += [divider.valid.eq(isqrt.o_valid), divider.divisor.eq(std),
                     divider.k.eq(shift_k),
                     divider.tag.eq(isqrt.o_tag | (std << (slot_bits + sum_width))),
                     stats_done.eq(divider.o_valid)]
        done_slot = divider.o_tag[:slot_bits]
        with m.If(divider.o_valid):
            m.d.sync += [row_sum[done_slot].eq(divider.o_tag[slot_bits:slot_bits + sum_width]),
                         row_std[done_slot].eq(divider.o_tag[slot_bits + sum_width:]),
                         row_recip[done_slot].eq(divider.quotient)]

        # ---- C: normalise, scale, shift, requantize ------------------------------------------
        emit = add_row_walker(m, "emit", slots=slots, max_beats=max_beats, beats=beats,
                              step=out_advance, can_start=ready > 0)
        m.d.comb += [emit_start.eq(emit.start),
                     emit_port.addr.eq(emit.slot * max_beats + emit.beat),
                     emit_port.en.eq(out_advance),
                     affine_read.addr.eq(emit.beat), affine_read.en.eq(out_advance)]
        emit_mask = lane_mask(m, "emit_mask", lanes=lanes, beat=emit.beat, beats=beats,
                              last_lanes=last_lanes)
        depth = LAYERNORM_EMIT_LATENCY - 1          # register stages before the output
        e_valid = [Signal(name=f"emit_valid_{n}") for n in range(depth)]
        e_last = [Signal(name=f"emit_last_{n}") for n in range(depth)]
        e_slot = [Signal(range(slots), name=f"emit_slot_{n}") for n in range(depth)]
        e_mask = [Signal(lanes, name=f"emit_mask_{n}") for n in range(depth)]
        out_last = Signal()
        m.d.comb += [out_advance.eq(~self.o.valid | self.o.ready),
                     freed.eq(self.o.valid & self.o.ready & out_last)]
        with m.If(out_advance):
            m.d.sync += [e_valid[0].eq(emit.fire), e_last[0].eq(emit.last),
                         e_slot[0].eq(emit.slot), e_mask[0].eq(emit_mask)]
            for n in range(1, depth):
                m.d.sync += [e_valid[n].eq(e_valid[n - 1]), e_last[n].eq(e_last[n - 1]),
                             e_slot[n].eq(e_slot[n - 1]), e_mask[n].eq(e_mask[n - 1])]
            m.d.sync += [self.o.valid.eq(e_valid[-1]), out_last.eq(e_last[-1])]
        # The row's statistics, each selected by slot one stage before the stage that uses it
        # (a row's statistics are stored before its emit starts and stay until its slot is
        # freed), so no slot multiplexer sits in front of an arithmetic stage.
        row_sum_sel = Signal(signed(sum_width))
        row_recip_sel = Signal(shift_k + 1)
        row_std_sel = [Signal(std_width, name=f"row_std_sel_{n}") for n in range(2)]
        with m.If(out_advance):
            m.d.sync += [row_sum_sel.eq(row_sum[emit.slot]), row_recip_sel.eq(row_recip[e_slot[0]]),
                         row_std_sel[0].eq(row_std[e_slot[1]]), row_std_sel[1].eq(row_std_sel[0])]
        centred_width = width + length_bits + 2
        shifted_width = centred_width + p
        out_low, out_high = -(1 << (self._out_width - 1)), (1 << (self._out_width - 1)) - 1
        # rounding_shift's offset 2**(shift - 1) (0 for shift 0), registered from the constants:
        # they are stable while a job runs, so its decoder is off the rounding stage's path
        round_offset = Signal(unsigned((1 << SHIFT_WIDTH) - 1), name="round_offset")
        m.d.sync += round_offset.eq((Const(1, 1) << k.shift) >> 1)
        for lane in range(lanes):
            def reg(shape, name):
                return Signal(shape, name=f"{name}_{lane}")
            g = [reg(signed(self._gamma_width), f"gamma{n}") for n in range(4)]
            b = [reg(signed(BETA_WIDTH), f"beta{n}") for n in range(4)]
            centred = reg(signed(centred_width), "centred")
            shifted = reg(signed(shifted_width), "shifted")
            product = reg(signed(shifted_width + shift_k + 2), "recip_product")
            estimate = reg(signed(shifted_width), "estimate")
            remainder = reg(signed(shifted_width + 2), "remainder")
            normalised = reg(signed(shifted_width), "normalised")
            affine = reg(signed(shifted_width + self._gamma_width + 1), "affine")
            scaled = reg(signed(shifted_width + self._gamma_width + 1 + self._multiplier_width
                                + 1), "scaled")
            rounded = reg(signed(max(len(scaled), len(round_offset)) + 2), "rounded")
            estimate_now = reg(signed(shifted_width), "estimate_now")
            m.d.comb += estimate_now.eq(product >> shift_k)
            std_now = row_std_sel[0]
            with m.If(out_advance):
                m.d.sync += [
                    # stage 1: centre (data of the read issued last cycle)
                    centred.eq(k.length * emit_port.data[lane] - row_sum_sel),
                    g[0].eq(affine_read.data.gamma[lane]), b[0].eq(affine_read.data.beta[lane]),
                    # stage 2: times the reciprocal
                    shifted.eq(centred << p),
                    product.eq((centred << p) * row_recip_sel),
                    g[1].eq(g[0]), b[1].eq(b[0]),
                    # stage 3: estimate and remainder
                    estimate.eq(estimate_now),
                    remainder.eq(shifted - estimate_now * std_now),
                    g[2].eq(g[1]), b[2].eq(b[1]),
                    # stage 4: one correction step
                    normalised.eq(estimate - (remainder < 0)
                                  + (remainder >= row_std_sel[1])),
                    g[3].eq(g[2]), b[3].eq(b[2]),
                    # stage 5: affine; stage 6: multiplier; stage 7: the rounding offset;
                    # stage 8: shift and saturate. Two stages, where one (the reference
                    # rounding_shift) was the engine's deepest logic: the shift amount's
                    # decoder, a carry chain as wide as ``scaled``, the runtime shift and the
                    # comparisons (docs/architecture.md, timing closure). round_shift_saturate
                    # here took the tiny LayerNorm from 4,706 to 12,034 LUT4 (yosys 0.23).
                    affine.eq(normalised * g[3] + b[3]),
                    scaled.eq(affine * k.multiplier),
                    rounded.eq(scaled + round_offset),
                    self.o.payload[lane].eq(Mux(e_mask[-1][lane], saturate(
                        rounded >> k.shift, out_low, out_high), 0)),
                ]
        return m


def _default_gamma_width() -> int:
    """``layernorm_constants``' default gamma width (the encoder layer uses the default)."""
    return inspect.signature(layernorm_constants).parameters["gamma_width"].default
