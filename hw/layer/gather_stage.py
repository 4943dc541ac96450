# amaranth: UnusedElaboratable=no
"""Gather stage: the token-gather unit between the scratchpad and the layer program.

While the softmax runs, :class:`GatherStage` sums each head's CLS probability row into a score
register per token (the first head overwrites). A TOKEN_GATHER instruction then

1. loads the ``T`` scores into the ``TokenGather`` unit, one per cycle (``T`` cycles);
2. loads the ``T`` rows: vector ``j`` of the region is read on cycle ``j`` (``W`` vectors a
   row), a row's last vector arrives a cycle later and the assembled row goes to the unit's row
   memory in that cycle (``T * W + 1`` cycles);
3. sends the job (protected, candidates kept, fuse) in the next cycle;
4. takes each gathered row as it leaves the unit and writes it back as ``W`` vectors on the
   following ``W`` cycles (row ``k`` of the destination); the next row is taken in the cycle
   the last vector of the previous one is written, so the unit sees ``ready`` one cycle in
   ``W``.

``finished`` pulses with the last vector of the last row. ``sw.cycle_model.layer_engine`` has
the count; the unit's own phases are ``sw.cycle_model.token_gather``.
"""

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.layer.scratchpad import ScratchClient
from sw.engine_params import LANE_WIDTH
from hw.tokens.token_gather import GatherTarget, TokenGather


class GatherStage(wiring.Component):
    """CLS score sums, and one TOKEN_GATHER from ``src_base`` to ``dst_base``.

    Members
    -------
    add, first, add_word, add_data : In
        Add vector ``add_data`` (``C`` probabilities) into scores ``add_word * C ..``
        (``first``: replace instead of add).
    start, tokens, keep, protected, fuse, src_base, dst_base, stride : In
    scratch : Out(ScratchClient(depth=depth, lanes=lanes))
        Reads rows through ``read_a`` (``read_b`` unused), writes them through ``write``.
    finished : Out(1)
    """

    def __init__(self, config, *, depth: int, lanes: int):
        self._gather = TokenGather(config)
        g = self._gather.geometry
        self._g, self._c, self._depth = g, lanes, depth
        self._words = -(-g.width // lanes)
        self._score_words = -(-g.tokens // lanes)
        vector = data.ArrayLayout(signed(LANE_WIDTH), lanes)
        super().__init__({
            "add": In(1), "first": In(1), "add_word": In(range(self._score_words + 1)),
            "add_data": In(vector),
            "start": In(1), "tokens": In(range(g.tokens + 1)), "keep": In(range(g.tokens + 1)),
            "protected": In(range(g.tokens + 1)), "fuse": In(1),
            "src_base": In(range(depth)), "dst_base": In(range(depth)),
            "stride": In(range(depth)),
            "scratch": Out(ScratchClient(depth=depth, lanes=lanes)),
            "finished": Out(1),
        })

    @property
    def gather(self) -> TokenGather:
        return self._gather

    def elaborate(self, platform):
        m = Module()
        g, c, words = self._g, self._c, self._words
        m.submodules.gather = gather = self._gather

        # ---- CLS score sums ----------------------------------------------------------------
        score_layout = data.ArrayLayout(unsigned(g.score_width), c)
        scores = Array(Signal(score_layout, name=f"scores_{w}") for w in range(self._score_words))
        with m.If(self.add):
            target = scores[self.add_word]
            for lane in range(c):
                value = self.add_data[lane][:g.score_width]
                m.d.sync += target[lane].eq(Mux(self.first, value, target[lane] + value))

        # ---- TOKEN_GATHER ------------------------------------------------------------------
        tokens, keep, protected = (Signal.like(self.tokens), Signal.like(self.keep),
                                   Signal.like(self.protected))
        fuse = Signal()
        src_base, dst_base = Signal.like(self.src_base), Signal.like(self.dst_base)
        stride = Signal.like(self.stride)
        token = Signal(range(g.tokens + 1))
        score_word = Signal(range(self._score_words + 1))
        score_lane = Signal(range(c))
        vector = Signal(range(words))
        row_addr = Signal(range(self._depth + 1))
        arriving = Signal()                        # the vector read last cycle arrives now
        arriving_vector = Signal(range(words))
        arriving_row = Signal(range(g.tokens + 1))
        row = Signal(data.ArrayLayout(signed(g.element_width), words * c))
        assembled = Signal.like(row)
        for v in range(words):
            for lane in range(c):
                element = v * c + lane
                m.d.comb += assembled[element].eq(Mux(
                    arriving & (arriving_vector == v),
                    self.scratch.read_a.data[lane][:g.element_width].as_signed(), row[element]))
        m.d.sync += row.eq(assembled)

        load = gather.load.payload
        job = gather.job.payload
        m.d.comb += [job.tokens.eq(tokens), job.keep.eq(keep), job.protected.eq(protected),
                     job.fuse.eq(fuse), job.indexed.eq(0)]

        # splitter: a taken row is written back as `words` vectors
        out_row = Signal(data.ArrayLayout(signed(g.element_width), words * c))
        splitting = Signal()
        split_vector = Signal(range(words))
        out_addr = Signal(range(self._depth + 1))
        last_vector = splitting & (split_vector == words - 1)
        take = gather.out.valid & gather.out.ready
        m.d.comb += gather.out.ready.eq(~splitting | last_vector)
        m.d.comb += [self.scratch.write.en.eq(splitting),
                     self.scratch.write.addr.eq(out_addr + split_vector)]
        for lane in range(c):
            m.d.comb += self.scratch.write.data[lane].eq(
                out_row.as_value().word_select(split_vector * c + lane, g.element_width)
                .as_signed())
        with m.If(splitting):
            with m.If(last_vector):
                m.d.sync += [split_vector.eq(0), out_addr.eq(out_addr + stride)]
            with m.Else():
                m.d.sync += split_vector.eq(split_vector + 1)
        with m.If(take):
            m.d.sync += [out_row.eq(gather.out.payload.row), splitting.eq(1)]
        with m.Elif(last_vector):
            m.d.sync += splitting.eq(0)

        with m.FSM(name="gather_stage"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [tokens.eq(self.tokens), keep.eq(self.keep),
                                 protected.eq(self.protected), fuse.eq(self.fuse),
                                 src_base.eq(self.src_base), dst_base.eq(self.dst_base),
                                 stride.eq(self.stride), token.eq(0), score_word.eq(0),
                                 score_lane.eq(0)]
                    m.next = "SCORES"
            with m.State("SCORES"):
                m.d.comb += [gather.load.valid.eq(1), load.target.eq(GatherTarget.SCORE),
                             load.addr.eq(token),
                             load.data.eq(scores[score_word][score_lane])]
                m.d.sync += token.eq(token + 1)
                with m.If(score_lane == c - 1):
                    m.d.sync += [score_lane.eq(0), score_word.eq(score_word + 1)]
                with m.Else():
                    m.d.sync += score_lane.eq(score_lane + 1)
                with m.If(token == tokens - 1):
                    m.d.sync += [token.eq(0), vector.eq(0), row_addr.eq(src_base)]
                    m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += self.scratch.read_a.addr.eq(row_addr + vector)
                m.d.sync += [arriving.eq(1), arriving_vector.eq(vector), arriving_row.eq(token)]
                with m.If(vector == words - 1):
                    m.d.sync += [vector.eq(0), token.eq(token + 1),
                                 row_addr.eq(row_addr + stride)]
                    with m.If(token == tokens - 1):
                        m.next = "ROWS_LAST"
                with m.Else():
                    m.d.sync += vector.eq(vector + 1)
            with m.State("ROWS_LAST"):
                m.d.sync += arriving.eq(0)
                m.next = "JOB"
            with m.State("JOB"):
                m.d.comb += gather.job.valid.eq(1)
                with m.If(gather.job.ready):
                    m.d.sync += out_addr.eq(dst_base)
                    m.next = "EMIT"
            with m.State("EMIT"):
                with m.If(last_vector & gather.done):
                    m.d.comb += self.finished.eq(1)
                    m.next = "IDLE"
        # a row is complete when its last vector arrives: write it to the unit's row memory
        with m.If(arriving & (arriving_vector == words - 1)):
            m.d.comb += [gather.load.valid.eq(1), load.target.eq(GatherTarget.ROW),
                         load.addr.eq(arriving_row), load.data.eq(assembled)]
        return m
