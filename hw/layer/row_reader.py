"""Row reader: streams rows of a scratchpad region to a special-function unit as beats.

A row of ``length`` elements occupies ``ceil(length / C)`` vectors of ``C`` lanes; a unit with
``L`` lanes (``C % L == 0``) takes it as ``ceil(length / L)`` beats (``sw.packing.rows_to_beats``).
The reader walks the vectors with synchronous reads into a small FIFO and cuts each vector into
``C / L`` beats, skipping the beats past the row's end, so that the unit sees one beat on every
cycle it is ready, from ``FIRST_BEAT_DELAY`` (``sw.cycle_model.layer_engine``) cycles after
``start``: the first read address is presented the cycle after ``start``, its data arrives a
cycle later and enters the FIFO, whose output shows it the cycle after that.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.layer.scratchpad import ScratchRead
from sw.engine_params import LANE_WIDTH

#: Vectors in flight between the memory and the beat cutter.
QUEUE_DEPTH = 4


def latched_row_shape(m: Module, start, length, *, vector_lanes: int, lanes: int,
                      max_words: int):
    """Registers ``(words, last_subs)`` of a row of ``length`` elements, latched on ``start``:
    its ``ceil(length / C)`` vectors and the beats of ``L`` lanes its last vector holds (the
    row walk of :class:`RowReader` and :class:`~hw.layer.row_writer.RowWriter`)."""
    c = vector_lanes
    words = Signal(range(max_words + 1), name="words")
    last_subs = Signal(range(c // lanes + 1), name="last_subs")
    with m.If(start):
        m.d.sync += [words.eq((length + c - 1) // c),
                     last_subs.eq((length - ((length + c - 1) // c - 1) * c + lanes - 1)
                                  // lanes)]
    return words, last_subs


class RowReader(wiring.Component):
    """Reads ``rows`` rows of ``length`` elements from ``base`` (``stride`` vectors per row).

    Parameters
    ----------
    vector_lanes, lanes : int
        ``C`` lanes of a scratchpad vector, ``L`` lanes of a beat (``C % L == 0``).
    out_shape : Shape
        Element shape of the beats (each 32-bit lane is truncated to it).
    max_rows, max_length, depth : int
        Largest row count and row length; scratchpad vectors.

    Members
    -------
    start : In(1)
        Latches ``base``, ``stride``, ``rows``, ``length`` and begins.
    scratch : Out(ScratchRead(depth=depth, lanes=vector_lanes))
        The scratchpad read port it walks.
        Synchronous read port of the scratchpad.
    o : Out(stream.Signature(ArrayLayout(out_shape, lanes)))
    busy : Out(1)
        From ``start`` until the last beat has been taken.
    """

    def __init__(self, *, vector_lanes: int, lanes: int, out_shape, max_rows: int,
                 max_length: int, depth: int):
        if vector_lanes % lanes:
            raise ValueError(f"Beat lanes ({lanes}) must divide vector lanes ({vector_lanes})")
        self._c, self._l = vector_lanes, lanes
        self._max_rows, self._max_length, self._depth = max_rows, max_length, depth
        self._max_words = -(-max_length // vector_lanes)
        super().__init__({
            "start": In(1),
            "base": In(range(depth)),
            "stride": In(range(self._max_words * 8 + 1)),
            "rows": In(range(max_rows + 1)),
            "length": In(range(max_length + 1)),
            "scratch": Out(ScratchRead(depth=depth, lanes=vector_lanes)),
            "o": Out(stream.Signature(data.ArrayLayout(out_shape, lanes))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c, lanes = self._c, self._l
        subs = c // lanes
        words, last_subs = latched_row_shape(m, self.start, self.length, vector_lanes=c,
                                             lanes=lanes, max_words=self._max_words)
        rows = Signal.like(self.rows)
        stride = Signal.like(self.stride)

        m.submodules.queue = queue = fifo.SyncFIFO(width=c * LANE_WIDTH, depth=QUEUE_DEPTH)

        # ---- producer: one vector read per cycle while the queue has room ----------------
        fetching = Signal()
        p_row = Signal(range(self._max_rows + 1))
        p_word = Signal.like(words)
        row_addr = Signal(range(self._depth + 1))
        addr = Signal(range(self._depth + 1))
        pending = Signal()
        issue = Signal()
        m.d.comb += [issue.eq(fetching & (queue.level + pending < QUEUE_DEPTH)),
                     self.scratch.addr.eq(addr)]
        m.d.sync += pending.eq(issue)
        m.d.comb += [queue.w_en.eq(pending), queue.w_data.eq(self.scratch.data.as_value())]

        # ---- consumer: cut the head vector into beats --------------------------------------
        emitting = Signal()
        c_row = Signal.like(p_row)
        c_word = Signal.like(words)
        c_sub = Signal(range(subs))
        last_word = c_word == words - 1
        word_subs = Mux(last_word, last_subs, subs)
        head = queue.r_data
        beat = self.o.payload
        for lane in range(lanes):
            element = head.word_select(c_sub * lanes + lane, LANE_WIDTH)
            m.d.comb += beat[lane].eq(element[:beat[lane].shape().width])
        m.d.comb += self.o.valid.eq(emitting & queue.r_rdy)
        m.d.comb += self.busy.eq(fetching | emitting)

        with m.If(self.start):
            m.d.sync += [
                rows.eq(self.rows), stride.eq(self.stride),
                fetching.eq(self.rows != 0), emitting.eq(self.rows != 0),
                p_row.eq(0), p_word.eq(0), row_addr.eq(self.base), addr.eq(self.base),
                c_row.eq(0), c_word.eq(0), c_sub.eq(0),
            ]
        with m.Else():
            with m.If(issue):
                with m.If(p_word == words - 1):
                    m.d.sync += [p_word.eq(0), p_row.eq(p_row + 1),
                                 row_addr.eq(row_addr + stride), addr.eq(row_addr + stride)]
                    with m.If(p_row == rows - 1):
                        m.d.sync += fetching.eq(0)
                with m.Else():
                    m.d.sync += [p_word.eq(p_word + 1), addr.eq(addr + 1)]
            with m.If(self.o.valid & self.o.ready):
                with m.If(c_sub == word_subs - 1):
                    m.d.comb += queue.r_en.eq(1)
                    m.d.sync += c_sub.eq(0)
                    with m.If(last_word):
                        m.d.sync += [c_word.eq(0), c_row.eq(c_row + 1)]
                        with m.If(c_row == rows - 1):
                            m.d.sync += emitting.eq(0)
                    with m.Else():
                        m.d.sync += c_word.eq(c_word + 1)
                with m.Else():
                    m.d.sync += c_sub.eq(c_sub + 1)
        return m
