"""The token-gather unit: top-k on the CLS attention row, compaction, fused token, gather.

Arithmetic is specified by ``sw.golden.token_select`` and timing by
``sw.cycle_model.token_gather`` (whose docstring is the timeline); the co-simulation checks
both.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.units.fixed_point import round_shift_saturate
from sw.config import AcceleratorConfig
from sw.cycle_model.token_gather import DIVIDE_CYCLES, MULTIPLY_LATENCY, score_width
from sw.golden.encoder_layer import RESIDUAL_BITS
from sw.golden.token_select import FUSION_RECIP_BITS

#: Width of each performance counter.
COUNTER_WIDTH = 32


class GatherTarget(enum.Enum, shape=2):
    """Memory written by a load command."""

    SCORE = 0   #: a token's CLS score (summed over the kept heads), low bits of ``data``
    ROW = 1     #: a token's row of ``hidden_size`` residual-stream elements
    INDEX = 2   #: an entry of the kept-index memory (index mode), low bits of ``data``


class TokenGatherGeometry:
    """Port layouts and widths of a unit for one config (plain numbers, read-only)."""

    def __init__(self, *, tokens: int, width: int, heads: int):
        for name, value in (("Tokens", tokens), ("Row width", width), ("Heads", heads)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.tokens, self.width, self.heads = tokens, width, heads
        self.element_width = RESIDUAL_BITS
        self.score_width = score_width(heads)
        self.index_width = max(1, (tokens - 1).bit_length())
        weight_max = heads * 255 + 1
        self.weight_width = weight_max.bit_length()
        self.sum_width = (tokens * weight_max).bit_length()
        self.acc_width = self.element_width + self.sum_width      # signed sum of w * x
        self.recip_width = FUSION_RECIP_BITS + 1
        self.row_layout = data.ArrayLayout(signed(self.element_width), width)
        self.load_layout = data.StructLayout({
            "target": GatherTarget, "addr": range(tokens),
            "data": unsigned(self.row_layout.size)})
        self.job_layout = data.StructLayout({
            "tokens": range(tokens + 1), "keep": range(tokens + 1),
            "protected": range(tokens + 1), "fuse": 1, "indexed": 1})
        self.out_layout = data.StructLayout({
            "row": self.row_layout, "index": range(tokens), "fused": 1})

    @classmethod
    def from_config(cls, config: AcceleratorConfig) -> "TokenGatherGeometry":
        m = config.model
        return cls(tokens=m.tokens, width=m.hidden_size, heads=m.num_heads)


class TokenGather(wiring.Component):
    """Keeps the protected tokens and the ``keep`` candidates with the highest CLS score (ties
    to the lower index), compacts their rows, appends the fused token of the dropped ones; or
    gathers rows by a loaded index list.

    Usage: while idle, write each token's score and row (and, for index mode, the index list)
    through ``load``; send one ``job``; take the rows from ``out`` (kept rows in index order,
    then the fused row, ``fused`` set); ``done`` rises after the last one.

    Parameters
    ----------
    config : AcceleratorConfig
        ``model.tokens`` (most rows), ``model.hidden_size`` (row width) and
        ``model.num_heads`` (score width) size the unit.

    Members
    -------
    load : In(stream.Signature(geometry.load_layout))
        Memory writes; ready while idle.
    job : In(stream.Signature(geometry.job_layout))
        ``tokens``, ``keep``, ``protected``, ``fuse``, ``indexed``; ready while idle.
    out : Out(stream.Signature(geometry.out_layout))
        Gathered rows with their source index.
    done : Out(1)
        High from the cycle after the last row left until the next job is accepted.
    total_cycles, stall_cycles : Out(COUNTER_WIDTH)
        Cycles of the last job (``sw.cycle_model.token_gather``), and those of them in which
        ``out`` held a row that was not taken.
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"Config must be an AcceleratorConfig, not {config!r}")
        self._config = config
        self._geometry = g = TokenGatherGeometry.from_config(config)
        super().__init__({
            "load": In(stream.Signature(g.load_layout)),
            "job": In(stream.Signature(g.job_layout)),
            "out": Out(stream.Signature(g.out_layout)),
            "done": Out(1),
            "total_cycles": Out(COUNTER_WIDTH),
            "stall_cycles": Out(COUNTER_WIDTH),
        })

    @property
    def geometry(self) -> TokenGatherGeometry:
        return self._geometry

    def elaborate(self, platform):
        m = Module()
        g = self._geometry

        # ---- storage and the load port ---------------------------------------------------------
        scores = Array(Signal(g.score_width, name=f"score_{i}") for i in range(g.tokens))
        m.submodules.row_mem = row_mem = Memory(shape=g.row_layout, depth=g.tokens, init=[])
        m.submodules.index_mem = index_mem = Memory(shape=range(g.tokens), depth=g.tokens,
                                                    init=[])
        row_write, row_read = row_mem.write_port(), row_mem.read_port()
        index_write, index_read = index_mem.write_port(), index_mem.read_port()

        busy = Signal()
        m.d.comb += self.load.ready.eq(~busy)
        command = self.load.payload
        loading = self.load.valid & self.load.ready
        with m.If(loading & (command.target == GatherTarget.SCORE)):
            m.d.sync += scores[command.addr].eq(command.data[:g.score_width])
        m.d.comb += [row_write.addr.eq(command.addr), row_write.data.eq(command.data),
                     row_write.en.eq(loading & (command.target == GatherTarget.ROW)),
                     # the scan phase overrides these while it compacts the kept indices
                     index_write.addr.eq(command.addr),
                     index_write.data.eq(command.data[:g.index_width]),
                     index_write.en.eq(loading & (command.target == GatherTarget.INDEX))]

        # ---- job registers -----------------------------------------------------------------------
        job = Signal(g.job_layout)
        threshold = Signal(g.score_width)                 # tau, built one bit at a time
        bit = Signal(range(g.score_width))
        ties_left = Signal(range(g.tokens + 1))           # ties still to keep
        position = Signal(range(g.tokens + 1))            # scan: token; emit: kept-index slot
        kept = Signal(range(g.tokens + 1))                # running keep count (compaction)
        pending = Signal()                                # a dropped row read is in flight
        pending_weight = Signal(g.weight_width)
        sums = Signal(data.ArrayLayout(signed(g.acc_width), g.width))
        weight_sum = Signal(g.sum_width)
        remainder = Signal(g.sum_width + 1)
        quotient = Signal(g.recip_width)
        divide_step = Signal(range(DIVIDE_CYCLES))
        lane = Signal(range(g.width + MULTIPLY_LATENCY - 1))
        fused_sum = Signal(signed(g.acc_width))
        fused_product = Signal(signed(g.acc_width + g.recip_width + 1))
        recip_shift_bits = FUSION_RECIP_BITS.bit_length()
        fused_row = Signal(g.row_layout)
        total = Signal(COUNTER_WIDTH)
        stall = Signal(COUNTER_WIDTH)
        m.d.comb += [self.total_cycles.eq(total), self.stall_cycles.eq(stall)]

        def is_candidate(i):
            return (i >= job.protected) & (i < job.tokens)

        def count_at_least(value):
            return sum((is_candidate(i) & (scores[i] >= value)).as_unsigned()
                       for i in range(g.tokens))

        # emit pipeline: slot -> kept index (index_read) -> row (row_read) -> out
        index_valid, row_valid = Signal(), Signal()
        row_index = Signal(range(g.tokens))
        advance = ~row_valid | self.out.ready

        with m.If(busy):
            m.d.sync += total.eq(total + 1)
        with m.If(self.out.valid & ~self.out.ready):
            m.d.sync += stall.eq(stall + 1)

        fused_needed = job.fuse & (job.tokens > job.protected + job.keep)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.job.ready.eq(1)
                with m.If(self.job.valid):
                    m.d.sync += [job.eq(self.job.payload), total.eq(0), stall.eq(0),
                                 self.done.eq(0), threshold.eq(0),
                                 bit.eq(g.score_width - 1), position.eq(0), kept.eq(0),
                                 pending.eq(0), weight_sum.eq(0), sums.eq(0),
                                 index_valid.eq(0), row_valid.eq(0)]
                    with m.If(self.job.payload.indexed):
                        m.d.sync += kept.eq(self.job.payload.keep)
                        m.next = "EMIT"
                    with m.Else():
                        m.next = "SELECT"

            with m.State("SELECT"):
                m.d.comb += busy.eq(1)
                candidate = threshold | (Const(1, g.score_width) << bit)
                with m.If(count_at_least(candidate) >= job.keep):
                    m.d.sync += threshold.eq(candidate)
                m.d.sync += bit.eq(bit - 1)
                with m.If(bit == 0):
                    m.next = "TIES"

            with m.State("TIES"):
                m.d.comb += busy.eq(1)
                greater = count_at_least(threshold + 1)
                m.d.sync += ties_left.eq(job.keep - greater)
                m.next = "SCAN"

            with m.State("SCAN"):
                m.d.comb += busy.eq(1)
                with m.If(pending):                      # the row read last cycle is here
                    for element in range(g.width):
                        m.d.sync += sums[element].eq(
                            sums[element] + row_read.data[element] * pending_weight)
                    m.d.sync += weight_sum.eq(weight_sum + pending_weight)
                score = scores[position]
                above = score > threshold
                tie = score == threshold
                keep_token = (position < job.protected) | above | (tie & (ties_left != 0))
                with m.If(position < job.tokens):
                    m.d.comb += row_read.addr.eq(position)
                    with m.If(keep_token):
                        m.d.comb += [index_write.addr.eq(kept), index_write.data.eq(position),
                                     index_write.en.eq(1)]
                        m.d.sync += kept.eq(kept + 1)
                        with m.If((position >= job.protected) & ~above):
                            m.d.sync += ties_left.eq(ties_left - 1)
                    m.d.sync += [pending.eq(~keep_token & job.fuse),
                                 pending_weight.eq(score + 1),
                                 position.eq(position + 1)]
                with m.Else():                           # the drain cycle
                    m.d.sync += [pending.eq(0), remainder.eq(0), quotient.eq(0),
                                 divide_step.eq(0), lane.eq(0), position.eq(0)]
                    with m.If(fused_needed):
                        m.next = "DIVIDE"
                    with m.Else():
                        m.next = "EMIT"

            with m.State("DIVIDE"):
                m.d.comb += busy.eq(1)
                # restoring division of 2**K by weight_sum: numerator bit K is the only one set
                numerator_bit = divide_step == 0
                shifted = Cat(numerator_bit, remainder[:-1])
                with m.If(shifted >= weight_sum):
                    m.d.sync += [remainder.eq(shifted - weight_sum),
                                 quotient.eq(Cat(1, quotient[:-1]))]
                with m.Else():
                    m.d.sync += [remainder.eq(shifted), quotient.eq(Cat(0, quotient[:-1]))]
                m.d.sync += divide_step.eq(divide_step + 1)
                with m.If(divide_step == DIVIDE_CYCLES - 1):
                    m.next = "MULTIPLY"

            with m.State("MULTIPLY"):
                # One multiplier, one lane per cycle, MULTIPLY_LATENCY stages: the lane's sum
                # (the sums shift down one element a cycle, so it is element 0); times the
                # reciprocal; rounded, saturated and shifted into the top of the fused row
                # (after ``width`` shifts element 0 holds lane 0).
                m.d.comb += busy.eq(1)
                low, high = -(1 << (g.element_width - 1)), (1 << (g.element_width - 1)) - 1
                m.d.sync += [fused_sum.eq(sums[0]),
                             sums.eq(sums.as_value() >> g.acc_width),
                             fused_product.eq(fused_sum * quotient),
                             lane.eq(lane + 1)]
                fused_value = round_shift_saturate(
                    fused_product, Const(FUSION_RECIP_BITS, recip_shift_bits), low, high)
                with m.If(lane >= MULTIPLY_LATENCY - 1):
                    m.d.sync += fused_row.eq(Cat(fused_row.as_value()[g.element_width:],
                                                 fused_value))
                with m.If(lane == g.width + MULTIPLY_LATENCY - 2):
                    m.next = "EMIT"

            with m.State("EMIT"):
                m.d.comb += busy.eq(1)
                m.d.comb += [index_read.addr.eq(position), index_read.en.eq(advance),
                             row_read.addr.eq(index_read.data), row_read.en.eq(advance),
                             self.out.valid.eq(row_valid),
                             self.out.payload.row.eq(row_read.data),
                             self.out.payload.index.eq(row_index)]
                with m.If(advance):
                    m.d.sync += [index_valid.eq(position < kept), row_valid.eq(index_valid),
                                 row_index.eq(index_read.data)]
                    with m.If(position < kept):
                        m.d.sync += position.eq(position + 1)
                last = (position == kept) & ~index_valid
                with m.If(row_valid & self.out.ready & last):
                    m.d.sync += row_valid.eq(0)
                    with m.If(fused_needed & ~job.indexed):
                        m.next = "EMIT_FUSED"
                    with m.Else():
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"

            with m.State("EMIT_FUSED"):
                m.d.comb += [busy.eq(1), self.out.valid.eq(1),
                             self.out.payload.row.eq(fused_row),
                             self.out.payload.index.eq(0), self.out.payload.fused.eq(1)]
                with m.If(self.out.ready):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        return m
