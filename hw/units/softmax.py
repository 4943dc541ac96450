"""Softmax unit: I-BERT's integer softmax over rows of attention scores, ``lanes`` per cycle."""

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.checks import check_fields, check_positive
from hw.units.exp import IntegerExp
from hw.units.fixed_point import round_shift_saturate
from hw.units.reciprocal import PowerOfTwoReciprocal
from hw.units.row_walker import add_counter, add_row_walker, lane_mask, row_shape
from sw.config import AcceleratorConfig
from sw.cycle_model.units import (SOFTMAX_RECIPROCAL_BITS, SoftmaxTiming, softmax_cycles,
                                  unit_timings)
from sw.golden.encoder_layer import PROBABILITY_BITS
from sw.golden.kernels import SoftmaxConstants, softmax_constants
from sw.numerics import SHIFT_WIDTH


def softmax_constants_layout(*, max_len: int, frac_bits: int,
                             multiplier_width: int) -> data.StructLayout:
    """The runtime constants of a softmax unit: the row length and ``SoftmaxConstants``."""
    return data.StructLayout({
        "length": range(max_len + 1),
        "multiplier": unsigned(multiplier_width),
        "shift": unsigned(SHIFT_WIDTH),
        "poly_b": unsigned(frac_bits + 1),
        "poly_c": unsigned(2 * frac_bits + 2),
        "recip_bits": range(SOFTMAX_RECIPROCAL_BITS),
    })


class Softmax(wiring.Component):
    """``softmax_int`` (``sw.golden.kernels``) over rows of ``length`` scores, ``lanes`` scores
    per transfer; unsigned ``Q0.out_bits`` probabilities out.

    A row arrives as ``ceil(length / lanes)`` beats, element ``k * lanes + j`` in lane ``j`` of
    beat ``k``; the last beat's lanes past ``length`` are ignored, and are 0 in the output. Rows
    follow each other with no gap. Inside, ``slots`` row buffers and three walkers
    (``sw.cycle_model.units``: fill and maximum; exponent sum and pipelined reciprocal; emit)
    overlap consecutive rows so each lane takes one score per cycle in steady state.

    Parameters
    ----------
    lanes, max_len : int
        Lanes, and the longest row (the config's token count).
    in_width, frac_bits, out_bits, multiplier_width : int
        Score width, ``F``, probability bits and multiplier width.

    src_loc_at : int
        Stack frames to skip when Amaranth attributes an unused unit (``from_config`` uses 1).

    Members
    -------
    constants : In(softmax_constants_layout(...))
        Row length and constants; stable while rows are in flight.
    i : In(stream.Signature(ArrayLayout(signed(in_width), lanes)))
    o : Out(stream.Signature(ArrayLayout(unsigned(out_bits), lanes)))
    """

    def __init__(self, *, lanes: int, max_len: int, in_width: int, frac_bits: int,
                 out_bits: int, multiplier_width: int,
                 src_loc_at: int = 0):
        self._lanes = check_positive(lanes, "Lanes")
        self._max_len = check_positive(max_len, "Longest row")
        self._in_width = check_positive(in_width, "Input width")
        self._frac_bits = check_positive(frac_bits, "Fraction bits")
        self._out_bits = check_positive(out_bits, "Output bits")
        self._multiplier_width = check_positive(multiplier_width, "Multiplier width")
        self._timing = SoftmaxTiming(lanes, max_len)
        super().__init__({
            "constants": In(softmax_constants_layout(max_len=max_len, frac_bits=frac_bits,
                                                     multiplier_width=multiplier_width)),
            "i": In(stream.Signature(data.ArrayLayout(signed(in_width), lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(unsigned(out_bits), lanes))),
        })

    @classmethod
    def from_config(cls, config: AcceleratorConfig) -> "Softmax":
        """The unit the encoder layer needs: rows of up to ``tokens`` ``acc_width``-bit scores,
        Q0.8 probabilities (``PROBABILITY_BITS``)."""
        hw = config.hardware
        timing = unit_timings(config)[0]
        return cls(src_loc_at=1, lanes=timing.lanes, max_len=timing.max_len,
                   in_width=hw.acc_width, frac_bits=softmax_constants(1.0).frac_bits,
                   out_bits=PROBABILITY_BITS, multiplier_width=hw.multiplier_width)

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def timing(self) -> SoftmaxTiming:
        return self._timing

    @property
    def latency(self) -> int:
        """Cycles from a lone full-length row's last input transfer to its last output."""
        return softmax_cycles(self._timing, rows=1, length=self._max_len).latency

    def constant_values(self, constants: SoftmaxConstants, length: int) -> dict:
        """The ``constants`` port's field values for rows of ``length`` scores.

        Raises
        ------
        ValueError
            If the constants were made for other widths, or a value does not fit the port.
        """
        c = constants
        if (c.frac_bits, c.out_bits) != (self._frac_bits, self._out_bits) or \
                c.in_width > self._in_width:
            raise ValueError(f"Softmax constants for frac_bits {c.frac_bits}, out_bits "
                             f"{c.out_bits}, in_width {c.in_width} do not fit a unit of "
                             f"frac_bits {self._frac_bits}, out_bits {self._out_bits}, "
                             f"in_width {self._in_width}")
        if not 1 <= length <= min(self._max_len, c.max_len):
            raise ValueError(f"Softmax row length must lie in 1..{min(self._max_len, c.max_len)}"
                             f", not {length}")
        if c.recip_bits < c.out_bits:
            raise ValueError(f"Softmax recip_bits ({c.recip_bits}) must be at least out_bits "
                             f"({c.out_bits})")
        values = {"length": length, "multiplier": c.multiplier, "shift": c.shift,
                  "poly_b": c.poly_b, "poly_c": c.poly_c, "recip_bits": c.recip_bits}
        check_fields(self.signature.members["constants"].shape, values, "Softmax")
        return values

    def elaborate(self, platform):
        m = Module()
        lanes, f, width = self._lanes, self._frac_bits, self._in_width
        timing = self._timing
        slots, max_beats = timing.slots, timing.max_beats
        k = self.constants
        beats, last_lanes = row_shape(m, k.length, lanes, max_beats)

        m.submodules.rows = rows = Memory(shape=data.ArrayLayout(signed(width), lanes),
                                          depth=slots * max_beats, init=[])
        fill_port = rows.write_port()
        sum_port = rows.read_port()
        emit_port = rows.read_port()
        row_max = Array(Signal(signed(width), name=f"row_max_{n}") for n in range(slots))
        recip = Array(Signal(SOFTMAX_RECIPROCAL_BITS, name=f"recip_{n}") for n in range(slots))

        transfer = self.i.valid & self.i.ready
        out_advance = Signal()
        freed = Signal()
        fill_done, recip_done = Signal(), Signal()
        fill_start, sum_start, emit_start = Signal(), Signal(), Signal()
        free = add_counter(m, "free_slots", limit=slots, init=slots, up=freed, down=fill_start)
        filled = add_counter(m, "filled_rows", limit=slots, init=0, up=fill_done,
                             down=sum_start)
        ready = add_counter(m, "ready_rows", limit=slots, init=0, up=recip_done,
                            down=emit_start)

        # ---- A: fill a slot and find the row maximum -----------------------------------------
        fill = add_row_walker(m, "fill", slots=slots, max_beats=max_beats, beats=beats,
                              step=self.i.valid, can_start=free > 0)
        m.d.comb += [fill_start.eq(fill.start), fill_done.eq(fill.finishing),
                     self.i.ready.eq(fill.active)]
        m.d.comb += [fill_port.addr.eq(fill.slot * max_beats + fill.beat),
                     fill_port.data.eq(self.i.payload), fill_port.en.eq(transfer)]
        fill_mask = lane_mask(m, "fill_mask", lanes=lanes, beat=fill.beat, beats=beats,
                              last_lanes=last_lanes)
        lowest = -(1 << (width - 1))
        beat_max = Signal(signed(width))
        candidates = [Mux(fill_mask[lane], self.i.payload[lane], lowest)
                      for lane in range(lanes)]
        while len(candidates) > 1:
            candidates = [Mux(a > b, a, b) for a, b in zip(candidates[::2], candidates[1::2])] \
                + candidates[len(candidates) // 2 * 2:]
        m.d.comb += beat_max.eq(candidates[0])
        running_max = Signal(signed(width))
        new_max = Signal(signed(width))
        m.d.comb += new_max.eq(Mux((fill.beat == 0) | (beat_max > running_max), beat_max,
                                   running_max))
        with m.If(transfer):
            m.d.sync += running_max.eq(new_max)
            with m.If(fill.last):
                m.d.sync += row_max[fill.slot].eq(new_max)

        # ---- B: exponent sum and reciprocal --------------------------------------------------
        exp_args = dict(distance_width=width + 1, frac_bits=f,
                        multiplier_width=self._multiplier_width)
        summing = add_row_walker(m, "sum", slots=slots, max_beats=max_beats, beats=beats,
                                 step=1, can_start=filled > 0)
        m.d.comb += [sum_start.eq(summing.start),
                     sum_port.addr.eq(summing.slot * max_beats + summing.beat)]
        sum_mask = lane_mask(m, "sum_mask", lanes=lanes, beat=summing.beat, beats=beats,
                             last_lanes=last_lanes)
        # tags of the beat in flight: read stage, then the i-exp stages
        depth = 1 + IntegerExp.latency
        tag_valid = [Signal(name=f"sum_valid_{n}") for n in range(depth)]
        tag_last = [Signal(name=f"sum_last_{n}") for n in range(depth)]
        tag_slot = [Signal(range(slots), name=f"sum_slot_{n}") for n in range(depth)]
        tag_mask = [Signal(lanes, name=f"sum_mask_{n}") for n in range(depth)]
        # the row's maximum, selected by slot in the read stage (stored before the row's walk)
        sum_max = Signal(signed(width))
        m.d.sync += [tag_valid[0].eq(summing.fire), tag_last[0].eq(summing.last),
                     tag_slot[0].eq(summing.slot), tag_mask[0].eq(sum_mask),
                     sum_max.eq(row_max[summing.slot])]
        for n in range(1, depth):
            m.d.sync += [tag_valid[n].eq(tag_valid[n - 1]), tag_last[n].eq(tag_last[n - 1]),
                         tag_slot[n].eq(tag_slot[n - 1]), tag_mask[n].eq(tag_mask[n - 1])]
        exps = []
        for lane in range(lanes):
            unit = IntegerExp(**exp_args)
            m.submodules[f"sum_exp_{lane}"] = unit
            m.d.comb += [unit.en.eq(1),
                         unit.distance.eq(sum_max - sum_port.data[lane]),
                         unit.multiplier.eq(k.multiplier), unit.shift.eq(k.shift),
                         unit.poly_b.eq(k.poly_b), unit.poly_c.eq(k.poly_c)]
            exps.append(Mux(tag_mask[-1][lane], unit.exp, 0))
        sum_width = 2 * f + 3 + self._max_len.bit_length()
        beat_sum = Signal(sum_width)
        m.d.comb += beat_sum.eq(sum(exps))
        running_sum = Signal(sum_width)
        total = Signal(sum_width)
        m.d.comb += total.eq(running_sum + beat_sum)
        with m.If(tag_valid[-1]):
            m.d.sync += running_sum.eq(Mux(tag_last[-1], 0, total))
        m.submodules.reciprocal = divider = PowerOfTwoReciprocal(
            divisor_width=sum_width, numerator_bits=SOFTMAX_RECIPROCAL_BITS,
            tag_width=max(1, (slots - 1).bit_length()))
        m.d.comb += [divider.valid.eq(tag_valid[-1] & tag_last[-1]), divider.divisor.eq(total),
                     divider.k.eq(k.recip_bits), divider.tag.eq(tag_slot[-1]),
                     recip_done.eq(divider.o_valid)]
        with m.If(divider.o_valid):
            m.d.sync += recip[divider.o_tag].eq(divider.quotient)

        # ---- C: emit the probabilities -------------------------------------------------------
        emit = add_row_walker(m, "emit", slots=slots, max_beats=max_beats, beats=beats,
                              step=out_advance, can_start=ready > 0)
        m.d.comb += [emit_start.eq(emit.start),
                     emit_port.addr.eq(emit.slot * max_beats + emit.beat),
                     emit_port.en.eq(out_advance)]
        emit_mask = lane_mask(m, "emit_mask", lanes=lanes, beat=emit.beat, beats=beats,
                              last_lanes=last_lanes)
        depth = 1 + IntegerExp.latency + 1          # read, i-exp, product
        e_valid = [Signal(name=f"emit_valid_{n}") for n in range(depth)]
        e_last = [Signal(name=f"emit_last_{n}") for n in range(depth)]
        e_slot = [Signal(range(slots), name=f"emit_slot_{n}") for n in range(depth)]
        e_mask = [Signal(lanes, name=f"emit_mask_{n}") for n in range(depth)]
        out_last = Signal()
        emit_max = Signal(signed(width))        # the row's maximum, selected in the read stage
        m.d.comb += [out_advance.eq(~self.o.valid | self.o.ready),
                     freed.eq(self.o.valid & self.o.ready & out_last)]
        with m.If(out_advance):
            m.d.sync += [e_valid[0].eq(emit.fire), e_last[0].eq(emit.last),
                         e_slot[0].eq(emit.slot), e_mask[0].eq(emit_mask),
                         emit_max.eq(row_max[emit.slot])]
            for n in range(1, depth):
                m.d.sync += [e_valid[n].eq(e_valid[n - 1]), e_last[n].eq(e_last[n - 1]),
                             e_slot[n].eq(e_slot[n - 1]), e_mask[n].eq(e_mask[n - 1])]
            m.d.sync += [self.o.valid.eq(e_valid[-1]), out_last.eq(e_last[-1])]
        out_shift = Signal(SHIFT_WIDTH)
        m.d.comb += out_shift.eq(k.recip_bits - self._out_bits)
        top = (1 << self._out_bits) - 1
        # The row's reciprocal, selected one stage before the product (the slot's reciprocal
        # is stored before its row's emit starts and stays until the slot is freed).
        emit_recip = Signal(SOFTMAX_RECIPROCAL_BITS)
        with m.If(out_advance):
            m.d.sync += emit_recip.eq(recip[e_slot[depth - 3]])
        for lane in range(lanes):
            unit = IntegerExp(**exp_args)
            m.submodules[f"emit_exp_{lane}"] = unit
            m.d.comb += [unit.en.eq(out_advance),
                         unit.distance.eq(emit_max - emit_port.data[lane]),
                         unit.multiplier.eq(k.multiplier), unit.shift.eq(k.shift),
                         unit.poly_b.eq(k.poly_b), unit.poly_c.eq(k.poly_c)]
            product = Signal(2 * f + 3 + SOFTMAX_RECIPROCAL_BITS, name=f"emit_product_{lane}")
            with m.If(out_advance):
                m.d.sync += product.eq(unit.exp * emit_recip)
                m.d.sync += self.o.payload[lane].eq(
                    Mux(~e_mask[-1][lane], 0, round_shift_saturate(product, out_shift, 0, top)))
        return m
