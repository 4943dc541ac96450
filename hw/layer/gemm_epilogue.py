# amaranth: UnusedElaboratable=no
"""The GEMM's epilogue in the layer engine: GELU or the residual add on each output vector.

Every GEMM output vector of the layer engine passes through here on its way into the scratchpad,
so the element-wise steps after a linear cost no instruction and no pass over the scratchpad of
their own (``sw.isa.Epilogue``; semantics in ``sw.golden.layer_program``):

- ``NONE``: the output itself (the requantized values, or an attention GEMM's raw sums);
- ``GELU``: ``sw.golden.kernels.gelu_int`` of each requantized ``data_width``-bit value, by a
  table of all ``2**data_width`` inputs, one copy per lane (``hw.layer.loading.gelu_table``
  fills them through ``table_*``): GELU of an int8 value is an int8 function of it;
- ``RESIDUAL``: ``sw.golden.kernels.residual_add_int(skip, output)`` lane by lane, the skip
  vector read from the scratchpad at the output's address plus ``skip_offset`` (the skip buffer
  has the output buffer's stride), with the instruction's residual constants.

Timing (``sw.cycle_model.layer_engine.EPILOGUE_LATENCY``): an output given on cycle ``t`` is
written on cycle ``t + 5`` whatever the epilogue: the skip read (and the table read), the two
products of the residual add (one MULT18X18D each on ECP5), their sum, the rounding shift with
saturation (``requantize`` with multiplier 1: ``hw.units.fixed_point.round_shift_saturate``,
no multiplier), and the output register.
"""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.layer.scratchpad import ScratchRead, ScratchWrite
from hw.units.fixed_point import round_shift_saturate
from sw.cycle_model.layer_engine import EPILOGUE_LATENCY
from sw.golden.encoder_layer import RESIDUAL_BITS
from sw.isa import EPILOGUE_BITS, Epilogue
from sw.numerics import SHIFT_WIDTH

__all__ = ["residual_constants_layout", "GemmEpilogue"]

# the skip read, the products, their sum, the rounding shift, the output register
assert EPILOGUE_LATENCY == 5


def residual_constants_layout(multiplier_width: int) -> data.StructLayout:
    """Runtime constants of one residual add (``sw.golden.kernels.ResidualConstants``)."""
    return data.StructLayout({"multiplier_a": unsigned(multiplier_width),
                              "multiplier_b": unsigned(multiplier_width),
                              "shift": unsigned(SHIFT_WIDTH)})


class GemmEpilogue(wiring.Component):
    """GELU, residual add or nothing on each GEMM output vector (see the module docstring).

    Parameters
    ----------
    lanes : int
        Lanes of an output vector (the array's columns).
    acc_width : int
        Width of the GEMM's output lanes.
    data_width : int
        Width of a requantized output: the GELU table has ``2**data_width`` entries.
    multiplier_width : int
        Width of the residual multipliers.
    depth : int
        Scratchpad addresses.

    Members
    -------
    mode : In(EPILOGUE_BITS)
        The :class:`~sw.isa.Epilogue` of the running GEMM (held while it runs).
    skip_offset : In(address width)
        Skip address minus output address, modulo the address width.
    constants : In(residual_constants_layout(multiplier_width))
    table_addr, table_data, table_en : In
        A write of GELU table entry ``table_addr`` (the input's two's-complement bits).
    out_addr, out_data, out_en : In
        The GEMM's output port.
    skip : Out(ScratchRead)
    write : Out(ScratchWrite)
    """

    def __init__(self, *, lanes: int, acc_width: int, data_width: int, multiplier_width: int,
                 depth: int):
        self._lanes, self._acc_width, self._data_width = lanes, acc_width, data_width
        self._multiplier_width, self._depth = multiplier_width, depth
        address = unsigned(Signal(range(depth)).shape().width)
        super().__init__({
            "mode": In(EPILOGUE_BITS),
            "skip_offset": In(address),
            "constants": In(residual_constants_layout(multiplier_width)),
            "table_addr": In(data_width), "table_data": In(signed(data_width)),
            "table_en": In(1),
            "out_addr": In(range(depth)),
            "out_data": In(data.ArrayLayout(signed(acc_width), lanes)),
            "out_en": In(1),
            "skip": Out(ScratchRead(depth=depth, lanes=lanes)),
            "write": Out(ScratchWrite(depth=depth, lanes=lanes)),
        })

    @classmethod
    def from_config(cls, config) -> "GemmEpilogue":
        """The epilogue of ``config``'s layer engine (``sw.engine_params.EngineParams``)."""
        from sw.engine_params import EngineParams

        params, hw = EngineParams.from_config(config), config.hardware
        return cls(lanes=params.lanes, acc_width=hw.acc_width, data_width=hw.data_width,
                   multiplier_width=hw.multiplier_width, depth=params.memory_map.depth)

    def elaborate(self, platform):
        m = Module()
        lanes, width = self._lanes, self._data_width
        address_width = self.skip_offset.shape().width
        m.d.comb += self.skip.addr.eq((self.out_addr + self.skip_offset)[:address_width])

        # stage 1: the skip vector and the table entries of the output arrive
        valid_1, addr_1 = Signal(), Signal.like(self.out_addr)
        out_1 = Signal.like(self.out_data)
        m.d.sync += [valid_1.eq(self.out_en), addr_1.eq(self.out_addr), out_1.eq(self.out_data)]
        # one copy of the table per lane, each with one read port: yosys's memory mapping
        # explores port assignments, and one memory with 16 read ports exhausted 23 GB
        table_out = []
        for lane in range(lanes):
            table = Memory(shape=signed(width), depth=1 << width, init=[])
            m.submodules[f"gelu_table_{lane}"] = table
            write, read = table.write_port(), table.read_port()
            m.d.comb += [write.addr.eq(self.table_addr), write.data.eq(self.table_data),
                         write.en.eq(self.table_en), read.addr.eq(self.out_data[lane][:width])]
            table_out.append(read.data)

        # stages 2..5: the residual add's two products, their sum, the rounding shift with
        # saturation (``requantize(sum, 1, shift)``), the output register; the table entries
        # or the plain outputs wait beside them
        constants = self.constants
        low, high = -(1 << (RESIDUAL_BITS - 1)), (1 << (RESIDUAL_BITS - 1)) - 1
        product = signed(RESIDUAL_BITS + self._multiplier_width + 1)
        gelu = self.mode == Epilogue.GELU
        residual = self.mode == Epilogue.RESIDUAL
        plain = data.ArrayLayout(signed(self._acc_width), lanes)
        plain_2, plain_3, plain_4 = (Signal(plain, name=f"plain_{n}") for n in (2, 3, 4))
        valid, addr = [valid_1], [addr_1]
        for stage in (2, 3, 4, 5):
            valid.append(Signal(name=f"valid_{stage}"))
            addr.append(Signal.like(self.out_addr, name=f"addr_{stage}"))
            m.d.sync += [valid[-1].eq(valid[-2]), addr[-1].eq(addr[-2])]
        result = Signal(data.ArrayLayout(signed(self._acc_width), lanes))
        for lane in range(lanes):
            skip = self.skip.data[lane][:RESIDUAL_BITS].as_signed()
            output = out_1[lane][:RESIDUAL_BITS].as_signed()
            scaled_skip = Signal(product, name=f"scaled_skip_{lane}")
            scaled_output = Signal(product, name=f"scaled_output_{lane}")
            total = Signal(signed(product.width + 1), name=f"sum_{lane}")
            rounded = Signal(range(low, high + 1), name=f"rounded_{lane}")
            m.d.sync += [scaled_skip.eq(skip * constants.multiplier_a),
                         scaled_output.eq(output * constants.multiplier_b),
                         plain_2[lane].eq(Mux(gelu, table_out[lane], out_1[lane])),
                         total.eq(scaled_skip + scaled_output), plain_3[lane].eq(plain_2[lane]),
                         rounded.eq(round_shift_saturate(total, constants.shift, low, high)),
                         plain_4[lane].eq(plain_3[lane]),
                         result[lane].eq(Mux(residual, rounded, plain_4[lane]))]
        m.d.comb += [self.write.addr.eq(addr[-1]), self.write.en.eq(valid[-1])]
        for lane in range(lanes):
            m.d.comb += self.write.data[lane].eq(result[lane])
        return m
