"""Weight stager: turns one head's keys or values into a dense GEMM weight, tile by tile.

``Q_h K_h^T`` and ``P_h V_h`` run on the block-sparse GEMM engine with an activation as the
weight: ``K_h`` (``keys x head_dim``) and ``V_h^T`` (``head_dim x keys``), every block stored.
The engine's weight words are array tiles (``sw.packing.weight_tiles``: word ``r`` of a tile
holds ``W[s*C + c, kk*R + r]``, ``c = 0 .. C-1``). For the keys that word is one feature of ``C``
consecutive keys (a column of ``C`` scratchpad vectors: a transpose); for the values it is one
key's ``C`` features (a scratchpad vector as it is). Keys past the layer's tokens are zero.

Per tile: ``C`` read cycles (rows ``key_tile*C ..``), one cycle for the last read, ``R``
write cycles into the GEMM engine's weight memory through its load port (ready while it is
idle); so ``2 * C + 1`` cycles a tile (``sw.cycle_model.layer_engine.stage_tile_cycles``), tiles
in weight-memory order.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.layer.scratchpad import ScratchRead


class WeightStager(wiring.Component):
    """Writes head ``K_h`` (``transpose``) or ``V_h^T`` tiles into GEMM weight words.

    Parameters
    ----------
    lanes : int
        ``C = R``: vector lanes and array size.
    block_rows, block_cols, keys, head_dim, data_width, max_rows, depth, weight_depth : int

    Members
    -------
    start : In(1)
        Latches ``transpose`` (keys) or not (values), ``src_base`` (the head's first vector
        of row 0), ``stride``, ``tokens`` and ``dst`` (first weight word).
    scratch : Out(ScratchRead(depth=depth, lanes=lanes))
        The scratchpad read port.
    weight_addr, weight_data, weight_en : Out
        Weight-memory writes (to the GEMM engine's load port).
    finished : Out(1)
        Pulses with the last weight write.
    """

    def __init__(self, *, lanes: int, block_rows: int, block_cols: int, keys: int,
                 head_dim: int, data_width: int, max_rows: int, depth: int,
                 weight_depth: int):
        self._c = lanes
        self._br, self._bc = block_rows, block_cols
        self._keys, self._head_dim = keys, head_dim
        self._data_width = data_width
        self._max_rows, self._depth, self._weight_depth = max_rows, depth, weight_depth
        super().__init__({
            "start": In(1), "transpose": In(1),
            "src_base": In(range(depth)), "stride": In(range(depth)),
            "tokens": In(range(max_rows + 1)), "dst": In(range(weight_depth)),
            "scratch": Out(ScratchRead(depth=depth, lanes=lanes)),
            "weight_addr": Out(range(weight_depth)),
            "weight_data": Out(data.ArrayLayout(signed(data_width), lanes)),
            "weight_en": Out(1),
            "finished": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self._c
        s_tiles, k_tiles = self._br // c, self._bc // c          # tiles of a block
        key_blocks_k, feat_blocks_k = self._keys // self._br, self._head_dim // self._bc
        feat_blocks_v, key_blocks_v = self._head_dim // self._br, self._keys // self._bc

        transpose = Signal()
        src_base, stride = Signal.like(self.src_base), Signal.like(self.stride)
        tokens = Signal.like(self.tokens)
        dst = Signal(range(self._weight_depth + 1))
        outer = Signal(range(max(key_blocks_k, feat_blocks_v) + 1))
        inner = Signal(range(max(feat_blocks_k, key_blocks_v) + 1))
        s = Signal(range(s_tiles))
        kk = Signal(range(k_tiles))
        outer_n = Mux(transpose, key_blocks_k, feat_blocks_v)
        inner_n = Mux(transpose, feat_blocks_k, key_blocks_v)
        key_tile = Mux(transpose, outer * s_tiles + s, inner * k_tiles + kk)
        feat_tile = Mux(transpose, inner * k_tiles + kk, outer * s_tiles + s)

        tile = Signal(data.ArrayLayout(data.ArrayLayout(signed(self._data_width), c), c))
        step = Signal(range(c + 1))
        key = Signal(range(self._keys + c))
        reading_valid, reading_zero, reading_index = Signal(), Signal(), Signal(range(c))

        with m.FSM(name="stager"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [transpose.eq(self.transpose), src_base.eq(self.src_base),
                                 stride.eq(self.stride), tokens.eq(self.tokens),
                                 dst.eq(self.dst), outer.eq(0), inner.eq(0), s.eq(0),
                                 kk.eq(0), step.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                # row key_tile*C + step, vector feat_tile of it
                m.d.comb += key.eq(key_tile * c + step)
                m.d.comb += self.scratch.addr.eq(src_base + key * stride + feat_tile)
                m.d.sync += [reading_valid.eq(1), reading_zero.eq(key >= tokens),
                             reading_index.eq(step)]
                with m.If(step == c - 1):
                    m.d.sync += step.eq(0)
                    m.next = "LAST"
                with m.Else():
                    m.d.sync += step.eq(step + 1)
            with m.State("LAST"):
                m.d.sync += reading_valid.eq(0)
                m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [self.weight_en.eq(1), self.weight_addr.eq(dst + step)]
                for lane in range(c):
                    m.d.comb += self.weight_data[lane].eq(
                        Mux(transpose, tile[lane][step], tile[step][lane]))
                with m.If(step == c - 1):
                    m.d.sync += [step.eq(0), dst.eq(dst + c)]
                    last_kk, last_s = kk == k_tiles - 1, s == s_tiles - 1
                    last_inner, last_outer = inner == inner_n - 1, outer == outer_n - 1
                    m.d.sync += kk.eq(Mux(last_kk, 0, kk + 1))
                    with m.If(last_kk):
                        m.d.sync += s.eq(Mux(last_s, 0, s + 1))
                        with m.If(last_s):
                            m.d.sync += inner.eq(Mux(last_inner, 0, inner + 1))
                            with m.If(last_inner):
                                m.d.sync += outer.eq(outer + 1)
                    with m.If(last_kk & last_s & last_inner & last_outer):
                        m.d.comb += self.finished.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "READ"
                with m.Else():
                    m.d.sync += step.eq(step + 1)
        # the vector read last cycle arrives now
        with m.If(reading_valid):
            for lane in range(c):
                m.d.sync += tile[reading_index][lane].eq(
                    Mux(reading_zero, 0, self.scratch.data[lane][:self._data_width].as_signed()))
        return m
