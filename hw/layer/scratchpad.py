# amaranth: UnusedElaboratable=no
"""The layer engine's scratchpad and its port arbiter: which unit owns the memory ports.

The scratchpad (``sw.engine_params``: one memory of ``lanes`` x ``LANE_WIDTH``-bit vectors
holding every buffer) has two read ports ``a`` and ``b`` and one write port. One unit runs at a
time, so one :class:`Owner` holds the ports at a time: the sequencer sets ``owner`` when it
starts an instruction's unit and returns it to ``Owner.LOAD`` (the load port writes) when the
instruction ends. While ``staging``, the weight stager reads port ``a`` instead and nothing
writes. Every client sees a :class:`ScratchClient`: read ports ``read_a`` / ``read_b``
(address out, registered data in, one cycle later) and a ``write`` port.
"""

from amaranth.hdl import Module, signed
from amaranth.lib import data, enum, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sw.engine_params import LANE_WIDTH

__all__ = ["Owner", "vector_layout", "ScratchRead", "ScratchWrite", "ScratchClient",
           "ScratchpadArbiter"]


class Owner(enum.Enum, shape=3):
    """The unit that holds the scratchpad's ports."""

    LOAD = 0        #: no instruction runs: the load port writes
    GEMM = 1
    LAYERNORM = 2
    SOFTMAX = 3
    GELU = 4
    RESIDUAL = 5
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
    """The scratchpad memory and the multiplexers that give its ports to ``owner``.

    Parameters
    ----------
    depth : int
        Vectors of the scratchpad.
    lanes : int
        Lanes of a vector.

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
    gemm, layernorm, softmax, gelu, residual, gather : In(ScratchClient)
        The instruction units' ports, by :class:`Owner` name.
    """

    def __init__(self, *, depth: int, lanes: int):
        for value, human in ((depth, "Scratchpad depth"), (lanes, "Scratchpad lanes")):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{human} must be a positive integer, not {value!r}")
        self._depth, self._lanes = depth, lanes
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

    def client(self, owner: Owner):
        """The :class:`ScratchClient` port of ``owner``."""
        return getattr(self, owner.name.lower())

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = memory = Memory(shape=vector_layout(self._lanes),
                                              depth=self._depth, init=[])
        read_a, read_b, write = memory.read_port(), memory.read_port(), memory.write_port()
        readback = memory.read_port()
        m.d.comb += [readback.addr.eq(self.readback.addr), self.readback.data.eq(readback.data),
                     self.stager.data.eq(read_a.data)]
        for owner in CLIENTS:
            port = self.client(owner)
            m.d.comb += [port.read_a.data.eq(read_a.data), port.read_b.data.eq(read_b.data)]
        with m.If(self.staging):
            m.d.comb += read_a.addr.eq(self.stager.addr)
        with m.Else():
            with m.Switch(self.owner):
                with m.Case(Owner.LOAD):
                    m.d.comb += [write.addr.eq(self.load.addr), write.data.eq(self.load.data),
                                 write.en.eq(self.load.en)]
                for owner in CLIENTS:
                    port = self.client(owner)
                    with m.Case(owner):
                        m.d.comb += [read_a.addr.eq(port.read_a.addr),
                                     read_b.addr.eq(port.read_b.addr),
                                     write.addr.eq(port.write.addr),
                                     write.data.eq(port.write.data),
                                     write.en.eq(port.write.en)]
        return m
