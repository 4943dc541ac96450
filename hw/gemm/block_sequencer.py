"""Walks a block-compressed weight and emits one descriptor per array tile to compute."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.gemm.geometry import GemmGeometry, LoadTarget


class BlockSequencer(wiring.Component):
    """Turns the BCSR row pointers and column indices into a stream of tile descriptors.

    For each block row ``i`` of the weight, for each output tile ``s`` of the block row, for each
    stored block ``j`` of the row, for each input tile ``kk`` of the block, it emits a descriptor
    of the tile: the activation tile it multiplies, the output tile it accumulates into, its
    first weight word, and whether it is the first / last contribution to that output tile. A
    block row with no stored block emits one ``zero`` descriptor per output tile (its outputs
    are the bias alone). A final descriptor with ``end`` set closes the job. Only stored blocks
    are ever visited.

    The weight's row pointers start at word ``row_ptr_base`` of the row-pointer memory and hold
    absolute block indices (column-index word and first weight word of block ``j`` are ``j`` and
    ``j * words_per_block``), so several weights can be resident at once; the first pointer is
    read while the job is accepted, which costs no cycle.

    The memories are read through synchronous ports (data one cycle after the address). The
    sequencer spends at most ``cycles_per_tile`` cycles per descriptor: two to read a row
    pointer when a block row starts, two to read a column index when a block starts, one to
    emit.

    Parameters
    ----------
    geometry : GemmGeometry
        Engine sizes.

    Members
    -------
    job : In(stream.Signature(geometry.sequencer_job_layout))
        Starts a walk over ``out_block_rows`` block rows whose pointers start at
        ``row_ptr_base``; ready while idle.
    row_ptr_addr : Out(range)
        Row pointer memory address.
    row_ptr_data : In(unsigned)
        Row pointer read one cycle after its address.
    col_idx_addr : Out(range)
        Column index memory address.
    col_idx_data : In(unsigned)
        Column index read one cycle after its address.
    tiles : Out(stream.Signature(geometry.tile_layout))
        Tile descriptors.
    """

    cycles_per_tile = 5

    def __init__(self, *, geometry: GemmGeometry):
        self._geometry = geometry
        g = geometry
        super().__init__({
            "job": In(stream.Signature(g.sequencer_job_layout)),
            "row_ptr_addr": Out(range(g.row_ptr_depth)),
            "row_ptr_data": In(g.word_shapes[LoadTarget.ROW_PTR]),
            "col_idx_addr": Out(range(max(g.max_blocks, 1))),
            "col_idx_data": In(g.word_shapes[LoadTarget.COL_IDX]),
            "tiles": Out(stream.Signature(g.tile_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        g = self._geometry
        out_tiles, in_tiles = g.out_tiles_per_block, g.in_tiles_per_block

        block_rows = Signal.like(self.job.payload.out_block_rows)
        row = Signal(range(g.max_block_rows + 1))                 # i
        out_tile_in_row = Signal(range(out_tiles))                # s
        block = Signal(range(g.max_blocks + 1))                   # j
        in_tile_in_block = Signal(range(in_tiles))                # kk
        row_begin = Signal.like(block)
        row_end = Signal.like(block)
        column = Signal.like(self.col_idx_data)

        row_ptr_base = Signal.like(self.job.payload.row_ptr_base)
        m.d.comb += [self.row_ptr_addr.eq(row_ptr_base + row + 1), self.col_idx_addr.eq(block)]

        tile = self.tiles.payload
        out_tile = row * out_tiles + out_tile_in_row
        m.d.comb += tile.out_tile.eq(out_tile)

        def next_row():
            m.d.sync += [row_begin.eq(row_end), row.eq(row + 1)]
            with m.If(row + 1 == block_rows):
                m.next = "END"
            with m.Else():
                m.next = "ROW_ADDR"

        with m.FSM():
            with m.State("IDLE"):
                # the weight's first row pointer (its first block) is read as the job arrives
                m.d.comb += [self.job.ready.eq(1),
                             self.row_ptr_addr.eq(self.job.payload.row_ptr_base)]
                with m.If(self.job.valid):
                    m.d.sync += [block_rows.eq(self.job.payload.out_block_rows), row.eq(0),
                                 row_ptr_base.eq(self.job.payload.row_ptr_base)]
                    m.next = "FIRST_ROW_ADDR"
            with m.State("FIRST_ROW_ADDR"):
                m.d.sync += row_begin.eq(self.row_ptr_data)
                m.next = "ROW_DATA"
            with m.State("ROW_ADDR"):
                m.next = "ROW_DATA"
            with m.State("ROW_DATA"):
                m.d.sync += [row_end.eq(self.row_ptr_data), out_tile_in_row.eq(0),
                             in_tile_in_block.eq(0), block.eq(row_begin)]
                with m.If(self.row_ptr_data == row_begin):
                    m.next = "ZERO"
                with m.Else():
                    m.next = "COL_ADDR"
            with m.State("COL_ADDR"):
                m.next = "COL_DATA"
            with m.State("COL_DATA"):
                m.d.sync += column.eq(self.col_idx_data)
                m.next = "EMIT"
            with m.State("EMIT"):
                tile_index = (block * out_tiles + out_tile_in_row) * in_tiles + in_tile_in_block
                m.d.comb += [
                    self.tiles.valid.eq(1),
                    tile.act_tile.eq(column * in_tiles + in_tile_in_block),
                    tile.weight_addr.eq(tile_index * g.array_rows),
                    tile.first.eq((block == row_begin) & (in_tile_in_block == 0)),
                    tile.last.eq((block + 1 == row_end) & (in_tile_in_block == in_tiles - 1)),
                ]
                with m.If(self.tiles.ready):
                    with m.If(in_tile_in_block != in_tiles - 1):
                        m.d.sync += in_tile_in_block.eq(in_tile_in_block + 1)
                    with m.Else():
                        m.d.sync += in_tile_in_block.eq(0)
                        with m.If(block + 1 != row_end):
                            m.d.sync += block.eq(block + 1)
                            m.next = "COL_ADDR"
                        with m.Elif(out_tile_in_row != out_tiles - 1):
                            m.d.sync += [block.eq(row_begin),
                                         out_tile_in_row.eq(out_tile_in_row + 1)]
                            m.next = "COL_ADDR"
                        with m.Else():
                            next_row()
            with m.State("ZERO"):
                m.d.comb += [self.tiles.valid.eq(1), tile.zero.eq(1), tile.first.eq(1),
                             tile.last.eq(1)]
                with m.If(self.tiles.ready):
                    with m.If(out_tile_in_row != out_tiles - 1):
                        m.d.sync += out_tile_in_row.eq(out_tile_in_row + 1)
                    with m.Else():
                        next_row()
            with m.State("END"):
                m.d.comb += [self.tiles.valid.eq(1), tile.end.eq(1)]
                with m.If(self.tiles.ready):
                    m.next = "IDLE"
        return m

