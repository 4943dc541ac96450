"""The block-sparse GEMM engine: memories, sequencer, systolic array, accumulation, requantizer.

Timing is specified by ``sw.cycle_model.gemm`` (whose module docstring is the timeline) and the
arithmetic by ``sw.golden.gemm``; the co-simulation checks both.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.gemm.block_sequencer import BlockSequencer
from hw.gemm.geometry import GemmGeometry, LoadTarget, unsigned_for
from hw.gemm.requantizer import Requantizer
from hw.gemm.systolic_array import SystolicArray
from sw.config import AcceleratorConfig
from sw.cycle_model.gemm import STARTUP_CYCLES, GemmTiming

#: Width of each performance counter.
COUNTER_WIDTH = 32


class BlockSparseGemm(wiring.Component):
    """Computes ``Y = requantize(X @ W.T + bias)`` for a block-sparse ``W``, visiting only its
    stored blocks.

    Usage: while idle, write the activation, weight, row-pointer, column-index and
    quantization memories through ``load`` (layouts in ``sw.packing``); send one ``job``; wait
    for ``done``; read ``Y`` through ``read_addr`` / ``read_data`` and the counters.

    Inside, a :class:`BlockSequencer` walks the weight's block-compressed rows and queues one
    descriptor per array tile. The streamer feeds each tile's ``M`` activation rows into the
    :class:`SystolicArray`, one per cycle, while it loads the next tile's weights into the other
    weight bank. Column sums are added to a per-row accumulator memory (the first tile of an
    output tile starts from the bias); the last tile's sums go through the
    :class:`Requantizer` into the output memory.

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator instance; its ``hardware`` section sizes the engine.

    Members
    -------
    load : In(stream.Signature(geometry.load_layout))
        Memory writes; ready while idle.
    job : In(stream.Signature(geometry.job_layout))
        Starts a GEMM of ``tokens`` rows, ``in_tiles * array_rows`` inputs and
        ``out_block_rows * block_rows`` outputs; ready while idle.
    done : Out(1)
        High from the cycle after the last output write until the next job is accepted.
    read_addr : In(range(out_buffer_depth))
        Output memory address.
    read_data : Out(ArrayLayout(signed(data_width), array_cols))
        Output word at the ``read_addr`` of the previous cycle.
    total_cycles, busy_cycles, stall_cycles : Out(COUNTER_WIDTH)
        Performance counters of the last job (see ``sw.cycle_model.gemm``).
    """

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"Config must be an AcceleratorConfig, not {config!r}")
        self._config = config
        self._geometry = g = GemmGeometry.from_config(config)
        super().__init__({
            "load": In(stream.Signature(g.load_layout)),
            "job": In(stream.Signature(g.job_layout)),
            "done": Out(1),
            "read_addr": In(range(g.out_depth)),
            "read_data": Out(g.word_shapes[LoadTarget.WEIGHT]),
            "total_cycles": Out(COUNTER_WIDTH),
            "busy_cycles": Out(COUNTER_WIDTH),
            "stall_cycles": Out(COUNTER_WIDTH),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    @property
    def geometry(self) -> GemmGeometry:
        return self._geometry

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
        memories = {target: Memory(shape=g.word_shapes[target], depth=depth, init=[])
                    for target, depth in g.depths.items()}
        for target, memory in memories.items():
            m.submodules[f"{target.name.lower()}_mem"] = memory
        write_ports = {target: memory.write_port() for target, memory in memories.items()}
        act_read = memories[LoadTarget.ACTIVATION].read_port()
        weight_read = memories[LoadTarget.WEIGHT].read_port()
        row_ptr_read = memories[LoadTarget.ROW_PTR].read_port()
        col_idx_read = memories[LoadTarget.COL_IDX].read_port()
        quant_read = memories[LoadTarget.QUANT].read_port()

        m.submodules.acc_mem = acc_mem = Memory(
            shape=data.ArrayLayout(signed(g.acc_width), cols), depth=g.max_tokens, init=[])
        acc_read, acc_write = acc_mem.read_port(), acc_mem.write_port()
        m.submodules.out_mem = out_mem = Memory(
            shape=g.word_shapes[LoadTarget.WEIGHT], depth=g.out_depth, init=[])
        out_read, out_write = out_mem.read_port(), out_mem.write_port()
        m.d.comb += [out_read.addr.eq(self.read_addr), self.read_data.eq(out_read.data)]

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
            sequencer.job.payload.eq(self.job.payload),
            sequencer.job.valid.eq(self.job.valid & ~running),
            self.job.ready.eq(sequencer.job.ready & ~running),
            job_accepted.eq(self.job.valid & self.job.ready),
        ]

        # ---- systolic array and its weight loader ---------------------------------------------
        m.submodules.array = array = SystolicArray(rows=rows, cols=cols,
                                                   data_width=g.data_width,
                                                   acc_width=g.acc_width)
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
        m.d.comb += [array.weight_we.eq(weight_we), array.weight_row_index.eq(weight_row_index),
                     array.weight_bank.eq(weight_bank), array.weight_row.eq(weight_read.data)]

        # ---- streamer --------------------------------------------------------------------------
        tokens = Signal.like(self.job.payload.tokens)
        in_tiles = Signal.like(self.job.payload.in_tiles)
        out_tiles = Signal(range(g.quant_depth + 1))
        period = Signal(range(max(g.max_tokens, timing.min_tile_period) + 1))
        current = Signal(g.tile_layout)
        upcoming = Signal(g.tile_layout)
        bank = Signal()
        offset = Signal.like(period)                   # u: cycle within the tile period
        act_addr = Signal.like(act_read.addr)
        out_addr = Signal(range(g.out_depth))
        row = Signal.like(tokens)
        prologue = Signal(range(STARTUP_CYCLES))
        drain = Signal(range(array.latency + Requantizer.latency + 2))
        done = Signal()
        m.d.comb += self.done.eq(done)

        issue = Signal()                               # comb: an activation row is issued
        in_window = Signal()                           # comb: inside the issue window

        with m.FSM(name="streamer"):
            with m.State("IDLE"):
                with m.If(job_accepted):
                    payload = self.job.payload
                    m.d.sync += [
                        running.eq(1), done.eq(0), prologue.eq(0),
                        tokens.eq(payload.tokens), in_tiles.eq(payload.in_tiles),
                        out_tiles.eq(payload.out_block_rows * g.out_tiles_per_block),
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
                    with m.If(tile_queue.r_rdy):
                        m.d.comb += tile_queue.r_en.eq(1)
                        m.d.sync += [current.eq(queued), prologue.eq(prologue + 1),
                                     act_addr.eq(queued.act_tile), out_addr.eq(queued.out_tile),
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
                frozen = (offset == 0) & ~tile_queue.r_rdy
                with m.If(~frozen):
                    with m.If(offset == 0):
                        m.d.comb += tile_queue.r_en.eq(1)
                        m.d.sync += upcoming.eq(queued)
                    with m.If(offset == timing.weight_load_offset):
                        m.d.comb += [load_start.eq(~upcoming.end & ~upcoming.zero),
                                     load_start_addr.eq(upcoming.weight_addr),
                                     load_start_bank.eq(~bank)]
                    with m.If(offset < tokens):
                        m.d.comb += issue.eq(1)
                        m.d.sync += [act_addr.eq(act_addr + in_tiles),
                                     out_addr.eq(out_addr + out_tiles), row.eq(row + 1)]
                    # the upcoming descriptor was popped at offset 0: it is in `upcoming` now,
                    # except at offset 0 itself, where it is still on the queue's output.
                    last_tile = Mux(offset == 0, queued.end, upcoming.end)
                    with m.If((offset == tokens - 1) & last_tile):
                        m.d.sync += drain.eq(0)
                        m.next = "DRAIN"
                    with m.Elif(offset == period - 1):
                        m.d.sync += [current.eq(upcoming), bank.eq(~bank), offset.eq(0),
                                     act_addr.eq(upcoming.act_tile),
                                     out_addr.eq(upcoming.out_tile), row.eq(0)]
                    with m.Else():
                        m.d.sync += offset.eq(offset + 1)
            with m.State("DRAIN"):
                m.d.sync += drain.eq(drain + 1)
                # last issue at X; its output is written at X + drain length: stop then.
                with m.If(drain == array.latency + Requantizer.latency):
                    m.d.sync += [done.eq(1), running.eq(0)]
                    m.next = "IDLE"

        m.d.comb += act_read.addr.eq(act_addr)
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
            "row": unsigned_for(g.max_tokens), "out_tile": unsigned_for(g.quant_depth),
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
            array.act.eq(Mux(entering.zero, 0, act_read.data)),
            array.bank.eq(entering.bank),
        ]

        # One cycle before the sums leave the array, read the row's accumulator and the output
        # tile's constants; when they leave, add and either store or requantize.
        before = meta[array.latency - 1]
        m.d.comb += [acc_read.addr.eq(before.row), quant_read.addr.eq(before.out_tile)]
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
        m.d.comb += [out_write.addr.eq(requantizer.o.payload.tag),
                     out_write.data.eq(requantizer.o.payload.data),
                     out_write.en.eq(requantizer.o.valid)]
        return m

