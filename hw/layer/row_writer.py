"""Row writer: collects a unit's output beats back into scratchpad vectors, one row at a time.

The inverse of :class:`hw.layer.row_reader.RowReader`: beats of ``L`` lanes fill a vector of
``C`` lanes (elements sign- or zero-extended to 32 bits, the lanes past the row's end 0); the
vector is written in the cycle its last beat arrives. Always ready, so a unit behind it never
sees back-pressure.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.layer.scratchpad import ScratchWrite
from sw.engine_params import LANE_WIDTH
from hw.layer.row_reader import latched_row_shape


class RowWriter(wiring.Component):
    """Writes ``rows`` rows of ``length`` elements from ``base`` (``stride`` vectors per row).

    Members
    -------
    start : In(1)
        Latches ``base``, ``stride``, ``rows``, ``length``.
    i : In(stream.Signature(ArrayLayout(in_shape, lanes)))
        Always ready.
    scratch : Out(ScratchWrite(depth=depth, lanes=vector_lanes))
        Write port of the scratchpad.
    row, word : Out
        Row and vector index of the current write (for taps such as the CLS-score sum).
    finished : Out(1)
        Pulses in the cycle the last vector is written.
    """

    def __init__(self, *, vector_lanes: int, lanes: int, in_shape, max_rows: int,
                 max_length: int, depth: int):
        if vector_lanes % lanes:
            raise ValueError(f"Beat lanes ({lanes}) must divide vector lanes ({vector_lanes})")
        self._c, self._l = vector_lanes, lanes
        self._max_rows, self._depth = max_rows, depth
        self._max_words = -(-max_length // vector_lanes)
        super().__init__({
            "start": In(1),
            "base": In(range(depth)),
            "stride": In(range(self._max_words * 8 + 1)),
            "rows": In(range(max_rows + 1)),
            "length": In(range(max_length + 1)),
            "i": In(stream.Signature(data.ArrayLayout(in_shape, lanes))),
            "scratch": Out(ScratchWrite(depth=depth, lanes=vector_lanes)),
            "row": Out(range(max_rows + 1)),
            "word": Out(range(self._max_words + 1)),
            "finished": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c, lanes = self._c, self._l
        subs = c // lanes
        words, last_subs = latched_row_shape(m, self.start, self.length, vector_lanes=c,
                                             lanes=lanes, max_words=self._max_words)
        rows = Signal.like(self.rows)
        stride = Signal.like(self.stride)
        row_addr = Signal(range(self._depth + 1))
        sub = Signal(range(subs))
        held = Signal(data.ArrayLayout(signed(LANE_WIDTH), c))
        last_word = self.word == words - 1
        word_subs = Mux(last_word, last_subs, subs)

        m.d.comb += self.i.ready.eq(1)
        incoming = Signal.like(held)
        for lane in range(c):
            beat_lane = self.i.payload[lane % lanes]
            m.d.comb += incoming[lane].eq(Mux(sub == lane // lanes, beat_lane, held[lane]))
        closing = self.i.valid & (sub == word_subs - 1)
        m.d.comb += [self.scratch.addr.eq(row_addr + self.word),
                     self.scratch.data.eq(incoming),
                     self.scratch.en.eq(closing)]

        with m.If(self.start):
            m.d.sync += [
                rows.eq(self.rows), stride.eq(self.stride), row_addr.eq(self.base),
                self.row.eq(0), self.word.eq(0), sub.eq(0), held.eq(0),
            ]
        with m.Elif(self.i.valid):
            with m.If(closing):
                m.d.sync += [sub.eq(0), held.eq(0)]
                with m.If(last_word):
                    m.d.sync += [self.word.eq(0), self.row.eq(self.row + 1),
                                 row_addr.eq(row_addr + stride)]
                    m.d.comb += self.finished.eq(self.row == rows - 1)
                with m.Else():
                    m.d.sync += self.word.eq(self.word + 1)
            with m.Else():
                m.d.sync += [sub.eq(sub + 1), held.eq(incoming)]
        return m
