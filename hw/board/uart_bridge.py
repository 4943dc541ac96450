"""The host bridge's byte protocol: commands from a host, as bytes, turned into the layer
engine's load writes, job start and read-backs (the table is in docs/board.md).

Every command is one command byte followed by its argument bytes; every multi-byte field is
little-endian. Every command is answered, so a host never sends ahead of the bridge:

========  =====  =========================================  ============================
command   byte   arguments                                  answer
========  =====  =========================================  ============================
INFO      0x49   none                                       A, D, R, V, C (5 bytes)
LOAD      0x4C   target (1), addr (A), data (D)             0x4C once the engine took it
START     0x53   none                                       0x53 once the engine took it
READ      0x52   addr (R)                                   scratchpad vector (V bytes)
STATUS    0x3F   none                                       done | error << 1 (1 byte)
CYCLES    0x43   none                                       cycles of the last job (C)
other     -      none                                       0xEE
========  =====  =========================================  ============================

``A``, ``D``, ``R``, ``V``, ``C`` are the byte counts of the load address, load data, read
address, read data and cycle counter, each ``ceil(bits / 8)`` of the engine's port; INFO
reports them so that a host needs nothing but the bridge to frame its commands.
"""

from __future__ import annotations

import enum

from amaranth import Cat, Const, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib import enum as amaranth_enum
from amaranth.lib.wiring import In, Out

__all__ = ["Command", "UNKNOWN_COMMAND", "HostBridge", "field_bytes"]

#: The answer to a byte that is no command.
UNKNOWN_COMMAND = 0xEE

#: Bytes of the LOAD command's target field.
TARGET_BYTES = 1


class Command(enum.IntEnum):
    """Command bytes (ASCII letters, so a terminal can poke the bridge)."""

    INFO = 0x49      # "I"
    LOAD = 0x4C      # "L"
    START = 0x53     # "S"
    READ = 0x52      # "R"
    STATUS = 0x3F    # "?"
    CYCLES = 0x43    # "C"


def field_bytes(bits: int) -> int:
    """Bytes that carry a ``bits``-wide field: ``ceil(bits / 8)``, at least one."""
    return max(1, -(-bits // 8))


class _Phase(amaranth_enum.Enum, shape=3):
    COMMAND = 0
    ARGUMENTS = 1
    LOAD = 2
    START = 3
    READ = 4
    ANSWER = 5


class HostBridge(wiring.Component):
    """Executes the byte protocol of the module docstring against a layer engine's ports.

    Parameters
    ----------
    load_layout : data.StructLayout
        The engine's load payload, with fields ``target``, ``addr`` and ``data``
        (``LayerEngine.load_layout``).
    read_addr_bits, read_data_bits, counter_bits : int
        Widths of the engine's ``read_addr``, ``read_data`` and ``cycles``.
    read_latency : int
        Cycles from ``read_addr`` to its ``read_data`` (the engine's read-back is registered: 1).

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the host.
    tx : Out(stream.Signature(8))
        Bytes to the host.
    load : Out(stream.Signature(load_layout))
    job : Out(stream.Signature(1))
    done, error : In(1)
    cycles : In(counter_bits)
    read_addr : Out(read_addr_bits)
    read_data : In(read_data_bits)

    Raises
    ------
    TypeError
        If ``load_layout`` is not a ``StructLayout`` with ``target``, ``addr`` and ``data``.
    ValueError
        If a width is not a positive integer or ``read_latency`` is negative.
    """

    def __init__(self, *, load_layout: data.StructLayout, read_addr_bits: int,
                 read_data_bits: int, counter_bits: int, read_latency: int = 1):
        try:
            self._check(load_layout, read_addr_bits, read_data_bits, counter_bits,
                        read_latency)
        except (TypeError, ValueError):
            # a component refused at construction was never meant to be used: no warning later
            self._MustUse__silence = True
            raise
        self._load_layout = load_layout
        self._read_latency = read_latency
        self._widths = {
            "addr": field_bytes(load_layout["addr"].width),
            "data": field_bytes(load_layout["data"].width),
            "read_addr": field_bytes(read_addr_bits),
            "read_data": field_bytes(read_data_bits),
            "cycles": field_bytes(counter_bits),
        }
        super().__init__({
            "rx": In(stream.Signature(unsigned(8))),
            "tx": Out(stream.Signature(unsigned(8))),
            "load": Out(stream.Signature(load_layout)),
            "job": Out(stream.Signature(unsigned(1))),
            "done": In(1),
            "error": In(1),
            "cycles": In(counter_bits),
            "read_addr": Out(read_addr_bits),
            "read_data": In(read_data_bits),
        })

    @staticmethod
    def _check(load_layout, read_addr_bits, read_data_bits, counter_bits, read_latency):
        if (not isinstance(load_layout, data.StructLayout)
                or {name for name, _ in load_layout} != {"target", "addr", "data"}):
            raise TypeError(f"Load layout must be a StructLayout with fields target, addr and "
                            f"data, not {load_layout!r}")
        for name, value in (("Read address width", read_addr_bits),
                            ("Read data width", read_data_bits),
                            ("Counter width", counter_bits)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(read_latency, int) or isinstance(read_latency, bool) \
                or read_latency < 0:
            raise ValueError(f"Read latency must be a non-negative integer, "
                             f"not {read_latency!r}")

    @property
    def field_bytes(self) -> dict[str, int]:
        """Bytes of each field on the wire: ``addr``, ``data`` (LOAD), ``read_addr``,
        ``read_data`` (READ) and ``cycles`` (CYCLES); INFO answers them in this order."""
        return dict(self._widths)

    def argument_bytes(self, command: Command) -> int:
        """Argument bytes that follow ``command``."""
        if command == Command.LOAD:
            return TARGET_BYTES + self._widths["addr"] + self._widths["data"]
        if command == Command.READ:
            return self._widths["read_addr"]
        return 0

    def elaborate(self, platform):
        m = Module()
        w = self._widths
        most_in = max(self.argument_bytes(command) for command in Command)
        most_out = max(w["read_data"], w["cycles"], len(w))
        arguments = Signal(8 * most_in)
        answer = Signal(8 * most_out)
        command = Signal(8)
        count = Signal(range(max(most_in, most_out) + 1))   # bytes received or left to send
        wait = Signal(range(self._read_latency + 1))
        phase = Signal(_Phase)

        def answer_with(value, length):
            m.d.sync += [answer.eq(value), count.eq(length), phase.eq(_Phase.ANSWER)]

        def execute(code):
            """What a command does once its arguments are in (``code`` its byte)."""
            with m.Switch(code):
                with m.Case(Command.INFO):
                    answer_with(Cat(*(Const(n, 8) for n in w.values())), len(w))
                with m.Case(Command.LOAD):
                    m.d.sync += phase.eq(_Phase.LOAD)
                with m.Case(Command.START):
                    m.d.sync += phase.eq(_Phase.START)
                with m.Case(Command.READ):
                    m.d.sync += [self.read_addr.eq(arguments), wait.eq(self._read_latency),
                                 phase.eq(_Phase.READ)]
                with m.Case(Command.STATUS):
                    answer_with(Cat(self.done, self.error), 1)
                with m.Case(Command.CYCLES):
                    answer_with(self.cycles, w["cycles"])
                with m.Default():
                    answer_with(UNKNOWN_COMMAND, 1)

        # LOAD's arguments, laid into the engine's payload field by field
        target = arguments[:8 * TARGET_BYTES]
        address = arguments[8 * TARGET_BYTES:][:8 * w["addr"]]
        payload = arguments[8 * (TARGET_BYTES + w["addr"]):][:8 * w["data"]]
        load = self.load.payload.as_value()
        for name, value in (("target", target), ("addr", address), ("data", payload)):
            field = self._load_layout[name]
            m.d.comb += load[field.offset:field.offset + field.width].eq(value)
        m.d.comb += self.job.payload.eq(1)

        expected = Signal.like(count)
        with m.Switch(command):
            for code in Command:
                with m.Case(code):
                    m.d.comb += expected.eq(self.argument_bytes(code))

        with m.Switch(phase):
            with m.Case(_Phase.COMMAND):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [command.eq(self.rx.payload), count.eq(0)]
                    with m.If((self.rx.payload == Command.LOAD)
                              | (self.rx.payload == Command.READ)):
                        m.d.sync += phase.eq(_Phase.ARGUMENTS)
                    with m.Else():
                        execute(self.rx.payload)
            with m.Case(_Phase.ARGUMENTS):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [arguments.word_select(count, 8).eq(self.rx.payload),
                                 count.eq(count + 1)]
                    with m.If(count + 1 == expected):
                        execute(command)
            with m.Case(_Phase.LOAD):
                m.d.comb += self.load.valid.eq(1)
                with m.If(self.load.ready):
                    answer_with(Command.LOAD, 1)
            with m.Case(_Phase.START):
                m.d.comb += self.job.valid.eq(1)
                with m.If(self.job.ready):
                    answer_with(Command.START, 1)
            with m.Case(_Phase.READ):
                with m.If(wait == 0):
                    answer_with(self.read_data, w["read_data"])
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.Case(_Phase.ANSWER):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(answer[:8])]
                with m.If(self.tx.ready):
                    m.d.sync += [answer.eq(answer >> 8), count.eq(count - 1)]
                    with m.If(count == 1):
                        m.d.sync += phase.eq(_Phase.COMMAND)
        return m
