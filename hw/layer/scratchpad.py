# amaranth: UnusedElaboratable=no
"""The layer engine's scratchpad and its port arbiter: which unit owns the memory ports.

The scratchpad (``sw.engine_params``: one physical memory per element type, ``lanes`` lanes of
that type per vector, in one flat address space whose top bits pick the memory) has two read
ports ``a`` and ``b`` and one write port; every port's data is ``lanes`` x ``LANE_WIDTH``-bit
signed lanes whatever memory it addresses (a write keeps each lane's low bits, a read sign- or
zero-extends them), so the units address regions through the memory map alone. One unit runs at a
time, so one :class:`Owner` holds the ports at a time: the sequencer sets ``owner`` when it
starts an instruction's unit and returns it to ``Owner.LOAD`` (the load port writes) when the
instruction ends. While ``staging``, the weight stager reads port ``a`` instead and nothing
writes. Every client sees a :class:`ScratchClient`: read ports ``read_a`` / ``read_b``
(address out, registered data in, one cycle later) and a ``write`` port.
"""

from amaranth.hdl import Module, Shape, Signal, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sw.engine_params import LANE_WIDTH, ElementType, ScratchMemory

__all__ = ["Owner", "vector_layout", "ScratchRead", "ScratchWrite", "ScratchClient",
           "ScratchpadArbiter"]


class Owner(enum.Enum, shape=3):
    """The unit that holds the scratchpad's ports."""

    LOAD = 0        #: no instruction runs: the load port writes
    GEMM = 1
    LAYERNORM = 2
    SOFTMAX = 3
    GATHER = 6


#: Owners that run instructions (every one has a :class:`ScratchClient` port).
CLIENTS = tuple(owner for owner in Owner if owner != Owner.LOAD)


def vector_layout(lanes: int) -> data.ArrayLayout:
    """One scratchpad vector: ``lanes`` signed ``LANE_WIDTH``-bit values."""
    return data.ArrayLayout(signed(LANE_WIDTH), lanes)


class ScratchRead(wiring.Signature):
    """A read port as its user sees it: ``addr`` out, the vector at it in a cycle later.

    Members
    -------
    addr : Out(range(depth))
    data : In(vector_layout(lanes))
    """

    def __init__(self, *, depth: int, lanes: int):
        self._depth, self._lanes = depth, lanes
        super().__init__({"addr": Out(range(depth)), "data": In(vector_layout(lanes))})

    def __eq__(self, other):
        return (type(other) is type(self) and (other._depth, other._lanes)
                == (self._depth, self._lanes))

    def __repr__(self):
        return f"ScratchRead(depth={self._depth}, lanes={self._lanes})"


class ScratchWrite(wiring.Signature):
    """A write port as its user sees it.

    Members
    -------
    addr : Out(range(depth))
    data : Out(vector_layout(lanes))
    en : Out(1)
    """

    def __init__(self, *, depth: int, lanes: int):
        self._depth, self._lanes = depth, lanes
        super().__init__({"addr": Out(range(depth)), "data": Out(vector_layout(lanes)),
                          "en": Out(1)})

    def __eq__(self, other):
        return (type(other) is type(self) and (other._depth, other._lanes)
                == (self._depth, self._lanes))

    def __repr__(self):
        return f"ScratchWrite(depth={self._depth}, lanes={self._lanes})"


class ScratchClient(wiring.Signature):
    """What a unit that runs an instruction uses of the scratchpad: two reads, one write.

    Members
    -------
    read_a, read_b : Out(ScratchRead)
    write : Out(ScratchWrite)
    """

    def __init__(self, *, depth: int, lanes: int):
        self._depth, self._lanes = depth, lanes
        read = ScratchRead(depth=depth, lanes=lanes)
        super().__init__({"read_a": Out(read), "read_b": Out(read),
                          "write": Out(ScratchWrite(depth=depth, lanes=lanes))})

    def __eq__(self, other):
        return (type(other) is type(self) and (other._depth, other._lanes)
                == (self._depth, self._lanes))

    def __repr__(self):
        return f"ScratchClient(depth={self._depth}, lanes={self._lanes})"


class ScratchpadArbiter(wiring.Component):
    """The scratchpad's memories and the multiplexers that give their ports to ``owner``.

    A port's address picks memory ``addr >> offset_bits`` and vector ``addr`` mod
    ``2**offset_bits`` in it; read data comes a cycle after the address, from the memory the
    address of that cycle picked.

    Parameters
    ----------
    depth : int
        Flat addresses of the scratchpad (``LayerMemoryMap.depth``).
    lanes : int
        Lanes of a vector.
    memories : tuple of sw.engine_params.ScratchMemory
        The physical memories by index (``LayerMemoryMap.memories``); by default one memory of
        ``depth`` signed ``LANE_WIDTH``-bit vectors.
    offset_bits : int
        Address bits within one memory (``LayerMemoryMap.offset_bits``); needed with
        ``memories``.

    Members
    -------
    owner : In(Owner)
        The client that holds the ports (combinational multiplexers).
    staging : In(1)
        The weight stager reads port ``a``; nothing writes.
    load : In(ScratchWrite)
        Writes of the load port, taken while ``owner`` is ``Owner.LOAD``.
    stager : In(ScratchRead)
    readback : In(ScratchRead)
        A read port of its own, for the testbench.
    gemm, layernorm, softmax, gather : In(ScratchClient)
        The instruction units' ports, by :class:`Owner` name.
    """

    def __init__(self, *, depth: int, lanes: int, memories=None, offset_bits: int = None):
        for value, human in ((depth, "Scratchpad depth"), (lanes, "Scratchpad lanes")):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{human} must be a positive integer, not {value!r}")
        if memories is None:
            memories = (ScratchMemory(0, ElementType(LANE_WIDTH, True), depth),)
            offset_bits = max(1, (depth - 1).bit_length())
        elif not isinstance(offset_bits, int) or offset_bits < 1:
            raise ValueError(f"Scratchpad offset bits must be a positive integer, not "
                             f"{offset_bits!r}")
        for index, memory in enumerate(memories):
            if (not isinstance(memory, ScratchMemory) or memory.index != index
                    or not 1 <= memory.depth <= 1 << offset_bits
                    or not 1 <= memory.element.bits <= LANE_WIDTH):
                raise ValueError(f"Scratchpad memory {index} must be a ScratchMemory with index "
                                 f"{index}, 1..{1 << offset_bits} vectors and 1..{LANE_WIDTH} "
                                 f"bits, not {memory!r}")
        self._depth, self._lanes = depth, lanes
        self._memories, self._offset_bits = tuple(memories), offset_bits
        read = ScratchRead(depth=depth, lanes=lanes)
        client = ScratchClient(depth=depth, lanes=lanes)
        super().__init__({
            "owner": In(Owner), "staging": In(1),
            "load": In(ScratchWrite(depth=depth, lanes=lanes)),
            "stager": In(read), "readback": In(read),
            **{owner.name.lower(): In(client) for owner in CLIENTS}})

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def memories(self) -> tuple:
        return self._memories

    def client(self, owner: Owner):
        """The :class:`ScratchClient` port of ``owner``."""
        return getattr(self, owner.name.lower())

    def elaborate(self, platform):
        m = Module()
        lanes, offset_bits = self._lanes, self._offset_bits
        vector = vector_layout(lanes)
        # the ports as the owner drives them, before the memory is picked
        read_a, read_b = Signal(range(self._depth)), Signal(range(self._depth))
        write_addr, write_en = Signal(range(self._depth)), Signal()
        write_data = Signal(vector)
        data_a, data_b, data_readback = Signal(vector), Signal(vector), Signal(vector)
        m.d.comb += [self.readback.data.eq(data_readback), self.stager.data.eq(data_a)]
        for owner in CLIENTS:
            port = self.client(owner)
            m.d.comb += [port.read_a.data.eq(data_a), port.read_b.data.eq(data_b)]
        with m.If(self.staging):
            m.d.comb += read_a.eq(self.stager.addr)
        with m.Else():
            with m.Switch(self.owner):
                with m.Case(Owner.LOAD):
                    m.d.comb += [write_addr.eq(self.load.addr), write_data.eq(self.load.data),
                                 write_en.eq(self.load.en)]
                for owner in CLIENTS:
                    port = self.client(owner)
                    with m.Case(owner):
                        m.d.comb += [read_a.eq(port.read_a.addr), read_b.eq(port.read_b.addr),
                                     write_addr.eq(port.write.addr),
                                     write_data.eq(port.write.data),
                                     write_en.eq(port.write.en)]

        reads = ((read_a, data_a, "a"), (read_b, data_b, "b"),
                 (self.readback.addr, data_readback, "readback"))
        # the memory each read port's data comes from: its address's, one cycle late
        picked = {}
        for address, _, name in reads:
            picked[name] = Signal(range(len(self._memories)), name=f"picked_{name}")
            m.d.sync += picked[name].eq(address >> offset_bits)
        for memory in self._memories:
            element = memory.element
            shape = data.ArrayLayout(signed(element.bits) if element.signed
                                     else unsigned(element.bits), lanes)
            store = Memory(shape=shape, depth=memory.depth, init=[])
            m.submodules[memory.name] = store
            offset = range(memory.depth)
            write = store.write_port()
            m.d.comb += [write.addr.eq(write_addr[:Shape.cast(offset).width]),
                         write.en.eq(write_en & (write_addr >> offset_bits == memory.index))]
            m.d.comb += [write.data[lane].eq(write_data[lane]) for lane in range(lanes)]
            for address, result, name in reads:
                port = store.read_port()
                m.d.comb += port.addr.eq(address[:Shape.cast(offset).width])
                with m.If(picked[name] == memory.index):
                    m.d.comb += [result[lane].eq(port.data[lane]) for lane in range(lanes)]
        return m
