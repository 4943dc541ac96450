"""The block-sparse GEMM datapath without its activation and output memories: sequencer,
systolic array, accumulation and requantizer, reading activations and writing outputs through
ports so that an enclosing engine (``BlockSparseGemm``, the layer engine) owns those memories.

Timing is specified by ``sw.cycle_model.gemm`` (whose module docstring is the timeline) and the
arithmetic by ``sw.golden.gemm``; the co-simulation of ``BlockSparseGemm`` checks both.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.checks import check_positive
from hw.gemm.block_sequencer import BlockSequencer
from hw.gemm.geometry import GemmGeometry, LoadTarget, unsigned_for
from hw.gemm.requantizer import Requantizer
from hw.gemm.systolic_array import SystolicArray
from sw.cycle_model.gemm import STARTUP_CYCLES, GemmTiming

#: Width of each performance counter.
COUNTER_WIDTH = 32

#: The memories a ``GemmCore`` keeps inside (the activations are outside).
CORE_MEMORIES = (LoadTarget.WEIGHT, LoadTarget.ROW_PTR, LoadTarget.COL_IDX, LoadTarget.QUANT)


class GemmCore(wiring.Component):
    """Computes ``Y = requantize(X @ W.T + bias)`` (or ``X @ W.T + bias`` itself) for a
    block-sparse ``W`` held in its own memories, reading ``X`` and writing ``Y`` through ports.

    Usage: while idle, write the weight, row-pointer, column-index and quantization memories
    through ``load`` (layouts in ``sw.packing``; ``ACTIVATION`` commands are ignored); send one
    ``job``; wait for ``done``. Several weights can be resident at once: each job names the
    first row-pointer and quantization word of its weight (row pointers hold absolute block
    indices, see :class:`BlockSequencer`).

    Inside, a :class:`BlockSequencer` walks the weight's block-compressed rows and queues one
    descriptor per array tile. The streamer reads each tile's ``M`` activation rows through
    ``act_addr`` / ``act_data``, one per cycle, into the :class:`SystolicArray`, while it loads
    the next tile's weights into the other weight bank. Column sums are added to a per-row
    accumulator memory (the first tile of an output tile starts from the bias); the last tile's
    sums go through the :class:`Requantizer` to ``out_*``, or, with ``raw`` set, are written
    themselves, delayed by the requantizer's latency so that the timing is the same.

    Parameters
    ----------
    geometry : GemmGeometry
        Sizes: array, widths, job limits, memory depths (``act_depth`` and ``out_depth`` are the
        address spaces of the two external ports).
    act_width : int or None
        Width of the signed activations (``geometry.data_width`` by default; weights are
        always ``data_width`` bits). ``data_width + 1`` lets unsigned ``data_width``-bit values
        (softmax probabilities) be activations.

    Raises
    ------
    TypeError
        If ``geometry`` is not a :class:`GemmGeometry`.
    ValueError
        If ``act_width`` is not a positive integer or ``acc_width < act_width + data_width``.

    Members
    -------
    load : In(stream.Signature(geometry.load_layout))
        Memory writes; ready while idle.
    job : In(stream.Signature(geometry.core_job_layout))
        Starts a GEMM of ``tokens`` rows, ``in_tiles * array_rows`` inputs and
        ``out_block_rows * block_rows`` outputs, the operands where the other fields say;
        ready while idle.
    done : Out(1)
        High from the cycle after the last output write until the next job is accepted.
    act_addr : Out(range(act_depth))
        Activation word address: ``act_base + row * act_stride + input_tile``.
    act_data : In(ArrayLayout(signed(act_width), array_rows))
        The activation word at the ``act_addr`` of the previous cycle (a synchronous read port).
    out_addr : Out(range(out_depth))
        Output word address: ``out_base + row * out_stride + output_tile``.
    out_data : Out(ArrayLayout(signed(acc_width), array_cols))
        Output word: the requantized ``data_width``-bit values sign-extended, or the sums.
    out_en : Out(1)
        Write ``out_data`` at ``out_addr`` this cycle.
    weight_stream : In(stream.Signature(weight word))
        The weight words of a ``streamed`` job (``hw.memory.weight_fetcher``), ``array_rows``
        per non-zero tile, in tile order; taken one per cycle while the tile loads.
    stream_tile_ready : In(1)
        A whole tile of unclaimed words has arrived on ``weight_stream``.
    stream_claim : Out(1)
        Claims a tile's words: a tile is scheduled only once its words have arrived, and the
        streamer waits at the tile boundary until they have (``sw.cycle_model.weight_stream``).
    total_cycles, busy_cycles, stall_cycles : Out(COUNTER_WIDTH)
        Performance counters of the last job (see ``sw.cycle_model.gemm``).
    """

    def __init__(self, geometry: GemmGeometry, *, act_width: int | None = None):
        if not isinstance(geometry, GemmGeometry):
            raise TypeError(f"Geometry must be a GemmGeometry, not {geometry!r}")
        self._geometry = g = geometry
        act_width = g.data_width if act_width is None else act_width
        self._act_width = check_positive(act_width, "Activation width")
        if g.acc_width < act_width + g.data_width:
            raise ValueError(f"Accumulator width must be at least the activation plus weight "
                             f"widths ({act_width + g.data_width}), not {g.acc_width}")
        super().__init__({
            "load": In(stream.Signature(g.load_layout)),
            "job": In(stream.Signature(g.core_job_layout)),
            "done": Out(1),
            "act_addr": Out(range(g.act_depth)),
            "act_data": In(data.ArrayLayout(signed(act_width), g.array_rows)),
            "out_addr": Out(range(g.out_depth)),
            "out_data": Out(data.ArrayLayout(signed(g.acc_width), g.array_cols)),
            "out_en": Out(1),
            "weight_stream": In(stream.Signature(g.word_shapes[LoadTarget.WEIGHT])),
            "stream_tile_ready": In(1),
            "stream_claim": Out(1),
            "total_cycles": Out(COUNTER_WIDTH),
            "busy_cycles": Out(COUNTER_WIDTH),
            "stall_cycles": Out(COUNTER_WIDTH),
        })

    @property
    def geometry(self) -> GemmGeometry:
        return self._geometry

    @property
    def act_width(self) -> int:
        return self._act_width

    @property
    def timing(self) -> GemmTiming:
        """The schedule this engine implements (``sw.cycle_model.gemm`` is its specification:
        the weight-load offset and shortest tile period come from there; the co-simulation
        checks that the resulting cycle counts match it exactly)."""
        return GemmTiming(self._geometry.array_rows, self._geometry.array_cols)

    def elaborate(self, platform):
        m = Module()
        g = self._geometry
        rows, cols = g.array_rows, g.array_cols
        timing = self.timing

        # ---- memories and the load port ----------------------------------------------------
        memories = {target: Memory(shape=g.word_shapes[target], depth=g.depths[target],
                                   init=[])
                    for target in CORE_MEMORIES}
        for target, memory in memories.items():
            m.submodules[f"{target.name.lower()}_mem"] = memory
        write_ports = {target: memory.write_port() for target, memory in memories.items()}
        weight_read = memories[LoadTarget.WEIGHT].read_port()
        row_ptr_read = memories[LoadTarget.ROW_PTR].read_port()
        col_idx_read = memories[LoadTarget.COL_IDX].read_port()
        quant_read = memories[LoadTarget.QUANT].read_port()

        m.submodules.acc_mem = acc_mem = Memory(
            shape=data.ArrayLayout(signed(g.acc_width), cols), depth=g.max_tokens, init=[])
        acc_read, acc_write = acc_mem.read_port(), acc_mem.write_port()

        running = Signal()
        m.d.comb += self.load.ready.eq(~running)
        command = self.load.payload
        for target, port in write_ports.items():
            m.d.comb += [
                port.addr.eq(command.addr),
                port.data.eq(command.data),
                port.en.eq(self.load.valid & self.load.ready & (command.target == target)),
            ]

        # ---- sequencer and its descriptor queue -----------------------------------------------
        m.submodules.sequencer = sequencer = BlockSequencer(geometry=g)
        m.submodules.tile_queue = tile_queue = fifo.SyncFIFO(
            width=g.tile_layout.size, depth=4)
        m.d.comb += [
            row_ptr_read.addr.eq(sequencer.row_ptr_addr),
            sequencer.row_ptr_data.eq(row_ptr_read.data),
            col_idx_read.addr.eq(sequencer.col_idx_addr),
            sequencer.col_idx_data.eq(col_idx_read.data),
            tile_queue.w_data.eq(sequencer.tiles.payload),
            tile_queue.w_en.eq(sequencer.tiles.valid),
            sequencer.tiles.ready.eq(tile_queue.w_rdy),
        ]
        queued = data.View(g.tile_layout, tile_queue.r_data)

        job_accepted = Signal()
        m.d.comb += [
            sequencer.job.payload.out_block_rows.eq(self.job.payload.out_block_rows),
            sequencer.job.payload.row_ptr_base.eq(self.job.payload.row_ptr_base),
            sequencer.job.valid.eq(self.job.valid & ~running),
            self.job.ready.eq(sequencer.job.ready & ~running),
            job_accepted.eq(self.job.valid & self.job.ready),
        ]

        # ---- systolic array and its weight loader ---------------------------------------------
        m.submodules.array = array = SystolicArray(rows=rows, cols=cols,
                                                   data_width=g.data_width,
                                                   acc_width=g.acc_width,
                                                   act_width=self._act_width)
        load_start = Signal()          # comb: begin loading a tile this cycle
        load_start_addr = Signal.like(weight_read.addr)
        load_start_bank = Signal()
        load_active = Signal()
        load_row = Signal(range(rows))
        load_addr = Signal.like(weight_read.addr)
        load_bank = Signal()
        issuing_row = Mux(load_start, 0, load_row)
        m.d.comb += weight_read.addr.eq(Mux(load_start, load_start_addr, load_addr) + issuing_row)
        with m.If(load_start):
            m.d.sync += [load_addr.eq(load_start_addr), load_bank.eq(load_start_bank),
                         load_row.eq(1 % rows), load_active.eq(rows > 1)]
        with m.Elif(load_active):
            m.d.sync += load_row.eq(load_row + 1)
            with m.If(load_row == rows - 1):
                m.d.sync += load_active.eq(0)
        # The weight word arrives one cycle after its address: write it into the array then.
        weight_we = Signal()
        weight_row_index = Signal(range(rows))
        weight_bank = Signal()
        m.d.sync += [weight_we.eq(load_start | load_active), weight_row_index.eq(issuing_row),
                     weight_bank.eq(Mux(load_start, load_start_bank, load_bank))]
        # a streamed job's tile rows are taken from the stream instead, one per cycle
        job = Signal(g.core_job_layout)                # the job's fields, latched at acceptance
        stream_word = Signal.like(self.weight_stream.payload)
        m.d.comb += self.weight_stream.ready.eq((load_start | load_active) & job.streamed)
        m.d.sync += stream_word.eq(self.weight_stream.payload)
        m.d.comb += [array.weight_we.eq(weight_we), array.weight_row_index.eq(weight_row_index),
                     array.weight_bank.eq(weight_bank),
                     array.weight_row.eq(Mux(job.streamed, stream_word, weight_read.data))]

        # ---- streamer --------------------------------------------------------------------------
        tokens = job.tokens
        period = Signal(range(max(g.max_tokens, timing.min_tile_period) + 1))
        current = Signal(g.tile_layout)
        upcoming = Signal(g.tile_layout)
        bank = Signal()
        offset = Signal.like(period)                   # u: cycle within the tile period
        act_addr = Signal.like(self.act_addr)
        out_addr = Signal.like(self.out_addr)
        row = Signal(range(g.max_tokens + 1))
        prologue = Signal(range(STARTUP_CYCLES))
        drain = Signal(range(array.latency + Requantizer.latency + 2))
        done = Signal()
        m.d.comb += self.done.eq(done)

        issue = Signal()                               # comb: an activation row is issued
        in_window = Signal()                           # comb: inside the issue window

        def waits_for_stream(tile):
            """The tile's weights come from the stream and have not all arrived."""
            return job.streamed & ~tile.zero & ~tile.end & ~self.stream_tile_ready

        def claims(tile):
            return job.streamed & ~tile.zero & ~tile.end

        with m.FSM(name="streamer"):
            with m.State("IDLE"):
                with m.If(job_accepted):
                    payload = self.job.payload
                    m.d.sync += [
                        running.eq(1), done.eq(0), prologue.eq(0), job.eq(payload),
                        period.eq(Mux(payload.tokens > timing.min_tile_period,
                                      payload.tokens, timing.min_tile_period)),
                        bank.eq(0),
                        self.total_cycles.eq(0), self.busy_cycles.eq(0),
                        self.stall_cycles.eq(0),
                    ]
                    m.next = "PROLOGUE"
            with m.State("PROLOGUE"):
                # prologue == cycle - 1; the first descriptor is popped at startup_cycles - 2
                # and its weights start loading the next cycle, one row ahead of the first row.
                with m.If(prologue == STARTUP_CYCLES - 3):
                    with m.If(tile_queue.r_rdy & ~waits_for_stream(queued)):
                        m.d.comb += [tile_queue.r_en.eq(1), self.stream_claim.eq(claims(queued))]
                        m.d.sync += [current.eq(queued), prologue.eq(prologue + 1),
                                     act_addr.eq(job.act_base + queued.act_tile),
                                     out_addr.eq(job.out_base + queued.out_tile),
                                     row.eq(0)]
                with m.Else():
                    m.d.sync += prologue.eq(prologue + 1)
                with m.If(prologue == STARTUP_CYCLES - 2):
                    m.d.comb += [load_start.eq(~current.zero),
                                 load_start_addr.eq(current.weight_addr),
                                 load_start_bank.eq(0)]
                    m.d.sync += offset.eq(0)
                    m.next = "STREAM"
            with m.State("STREAM"):
                m.d.comb += in_window.eq(1)
                # A period starts by popping the next descriptor; if the sequencer has not
                # produced it yet, everything waits (the cycle model assumes it never does).
                # A streamed tile also waits for its weight words.
                frozen = (offset == 0) & (~tile_queue.r_rdy | waits_for_stream(queued))
                with m.If(~frozen):
                    with m.If(offset == 0):
                        m.d.comb += [tile_queue.r_en.eq(1),
                                     self.stream_claim.eq(claims(queued))]
                        m.d.sync += upcoming.eq(queued)
                    with m.If(offset == timing.weight_load_offset):
                        m.d.comb += [load_start.eq(~upcoming.end & ~upcoming.zero),
                                     load_start_addr.eq(upcoming.weight_addr),
                                     load_start_bank.eq(~bank)]
                    with m.If(offset < tokens):
                        m.d.comb += issue.eq(1)
                        m.d.sync += [act_addr.eq(act_addr + job.act_stride),
                                     out_addr.eq(out_addr + job.out_stride), row.eq(row + 1)]
                    # the upcoming descriptor was popped at offset 0: it is in `upcoming` now,
                    # except at offset 0 itself, where it is still on the queue's output.
                    last_tile = Mux(offset == 0, queued.end, upcoming.end)
                    with m.If((offset == tokens - 1) & last_tile):
                        m.d.sync += drain.eq(0)
                        m.next = "DRAIN"
                    with m.Elif(offset == period - 1):
                        m.d.sync += [current.eq(upcoming), bank.eq(~bank), offset.eq(0),
                                     act_addr.eq(job.act_base + upcoming.act_tile),
                                     out_addr.eq(job.out_base + upcoming.out_tile), row.eq(0)]
                    with m.Else():
                        m.d.sync += offset.eq(offset + 1)
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                # last issue at X; its output is written at X + drain length: stop then.
                with m.If(drain == array.latency + Requantizer.latency):
                    m.d.sync += [done.eq(1), running.eq(0)]
                    m.next = "IDLE"

        m.d.comb += self.act_addr.eq(act_addr)
        with m.If(running):
            m.d.sync += self.total_cycles.eq(self.total_cycles + 1)
        useful = issue & ~current.zero
        with m.If(useful):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
        with m.If(in_window & ~useful):
            m.d.sync += self.stall_cycles.eq(self.stall_cycles + 1)

        # ---- metadata travelling beside the array ---------------------------------------------
        meta_layout = data.StructLayout({
            "valid": 1, "zero": 1, "bank": 1, "first": 1, "last": 1,
            "row": unsigned_for(g.max_tokens), "out_tile": unsigned_for(g.max_out_tiles),
            "out_addr": unsigned_for(g.out_depth),
        })
        issued = Signal(meta_layout)
        m.d.comb += [issued.valid.eq(issue), issued.zero.eq(current.zero), issued.bank.eq(bank),
                     issued.first.eq(current.first), issued.last.eq(current.last),
                     issued.row.eq(row), issued.out_tile.eq(current.out_tile),
                     issued.out_addr.eq(out_addr)]
        # meta[k] describes the row issued k+1 cycles ago.
        meta = [Signal(meta_layout, name=f"meta_{k}") for k in range(array.latency + 1)]
        m.d.sync += meta[0].eq(issued)
        for k in range(1, len(meta)):
            m.d.sync += meta[k].eq(meta[k - 1])

        entering = meta[0]             # the activation word read at issue is on the port now
        m.d.comb += [
            array.act.eq(Mux(entering.zero, 0, self.act_data)),
            array.bank.eq(entering.bank),
        ]

        # One cycle before the sums leave the array, read the row's accumulator and the output
        # tile's constants; when they leave, add and either store or requantize.
        before = meta[array.latency - 1]
        m.d.comb += [acc_read.addr.eq(before.row),
                     quant_read.addr.eq(job.quant_base + before.out_tile)]
        leaving = meta[array.latency]
        quant = quant_read.data
        sums = Signal(data.ArrayLayout(signed(g.acc_width), cols))
        for c in range(cols):
            base = Mux(leaving.first, quant[c].bias, acc_read.data[c])
            m.d.comb += sums[c].eq(base + array.psum[c])
        m.d.comb += [acc_write.addr.eq(leaving.row), acc_write.data.eq(sums),
                     acc_write.en.eq(leaving.valid & ~leaving.last)]

        m.submodules.requantizer = requantizer = Requantizer(
            lanes=cols, acc_width=g.acc_width, multiplier_width=g.multiplier_width,
            out_width=g.data_width, tag_width=meta_layout["out_addr"].shape.width)
        m.d.comb += [requantizer.i.valid.eq(leaving.valid & leaving.last),
                     requantizer.i.payload.acc.eq(sums),
                     requantizer.i.payload.tag.eq(leaving.out_addr)]
        for c in range(cols):
            m.d.comb += [requantizer.i.payload.multiplier[c].eq(quant[c].multiplier),
                         requantizer.i.payload.shift[c].eq(quant[c].shift)]

        # Raw mode: the sums themselves, delayed as long as the requantizer takes.
        raw_sums = sums
        for stage in range(Requantizer.latency):
            delayed = Signal.like(sums, name=f"raw_sums_{stage}")
            m.d.sync += delayed.eq(raw_sums)
            raw_sums = delayed
        for c in range(cols):
            m.d.comb += self.out_data[c].eq(Mux(job.raw, raw_sums[c],
                                                requantizer.o.payload.data[c]))
        m.d.comb += [self.out_addr.eq(requantizer.o.payload.tag),
                     self.out_en.eq(requantizer.o.valid)]
        return m
