"""The board's top level: a layer engine behind the UART host bridge.

On a platform (``amaranth_boards.ulx3s.ULX3S_85F_Platform``) the bridge's serial line is the
board's ``uart`` resource (the FTDI USB serial port) and the LEDs show ``done`` (LED 0),
``error`` (LED 1), a received framing error or overrun (LED 2) and a heartbeat (LED 7);
without a platform (simulation) the serial line is the ``uart_rx`` / ``uart_tx`` attributes.
The engine runs in the platform's default clock domain (the board's 25 MHz oscillator).

A layer engine streams its linears' weights over AXI4 from external memory; the board has no
DRAM controller here, so its external memory is an on-chip ``AxiReadRam`` of
``weight_words`` words (rounded up to a power of two) that the host fills with LOAD commands of
target :data:`WEIGHT_TARGET` (a value ``EngineTarget`` does not use): the low data-bus bits of
the LOAD's data are the word, the bits above them its word address. Those loads go to the RAM,
every other load to the engine.
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Mux, Signal, Value
from amaranth.lib import io, wiring

from hw.board.uart import UartRx, UartTx
from hw.board.uart_bridge import HostBridge
from hw.memory.axi_ram import AxiReadRam

__all__ = ["HEARTBEAT_BITS", "WEIGHT_TARGET", "BoardTop", "weight_load", "weight_ram_depth"]

#: The LOAD target the board top sends to its weight RAM instead of the engine.
WEIGHT_TARGET = 7

#: Width of the heartbeat counter: its top bit toggles every 2**25 cycles (1.3 s at 25 MHz).
HEARTBEAT_BITS = 26

#: Cycles from the engine's ``read_addr`` to its ``read_data`` (a registered read-back).
ENGINE_READ_LATENCY = 1


class BoardTop(Elaboratable):
    """``engine`` (a ``LayerEngine``, or any component with its ``load``, ``job``, ``done``,
    ``error``, ``cycles``, ``read_addr`` and ``read_data`` members and ``load_layout``) behind
    a :class:`HostBridge` on a UART of ``divisor`` clock cycles per bit.

    Parameters
    ----------
    engine : wiring.Component
    divisor : int
        Clock cycles per bit (``hw.board.uart.baud_divisor``).
    weight_words : int or None
        Words the weight RAM must hold (``EngineParams.external_words``), for an engine with an
        ``axi`` read port; None for none.

    Attributes
    ----------
    uart_rx, uart_tx : Signal
        The serial line when elaborated without a platform (``uart_rx`` idles high).
    bridge : HostBridge
    weights : AxiReadRam or None
    """

    def __init__(self, engine: wiring.Component, *, divisor: int,
                 weight_words: int | None = None):
        self.engine = engine
        self.weights = None
        if weight_words is not None:
            bus = engine.signature.members["axi"].signature
            depth = weight_ram_depth(weight_words)
            self.weights = AxiReadRam(data_width=bus.data_width, depth=depth,
                                      addr_width=bus.addr_width)
            needed = bus.data_width + (depth - 1).bit_length()
            if engine.load_layout["data"].width < needed:
                raise ValueError(f"A weight LOAD needs {needed} data bits (a word and its "
                                 f"address); the engine's load data has "
                                 f"{engine.load_layout['data'].width}")
        self.receiver = UartRx(divisor=divisor)
        self.transmitter = UartTx(divisor=divisor)
        self.bridge = HostBridge(load_layout=engine.load_layout,
                                 read_addr_bits=len(Value.cast(engine.read_addr)),
                                 read_data_bits=len(Value.cast(engine.read_data)),
                                 counter_bits=len(Value.cast(engine.cycles)),
                                 read_latency=ENGINE_READ_LATENCY)
        self.uart_rx = Signal(init=1)
        self.uart_tx = Signal(init=1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.bridge = bridge = self.bridge
        m.submodules.receiver = receiver = self.receiver
        m.submodules.transmitter = transmitter = self.transmitter

        wiring.connect(m, receiver.bytes, bridge.rx)
        wiring.connect(m, bridge.tx, transmitter.bytes)
        if self.weights is None:
            wiring.connect(m, bridge.load, engine.load)
        else:
            m.submodules.weights = weights = self.weights
            wiring.connect(m, engine.axi, weights.axi)
            word_bits = len(weights.write_data)
            payload = bridge.load.payload
            to_ram = Value.cast(payload.target) == WEIGHT_TARGET
            m.d.comb += [engine.load.payload.eq(payload),
                         engine.load.valid.eq(bridge.load.valid & ~to_ram),
                         bridge.load.ready.eq(Mux(to_ram, 1, engine.load.ready)),
                         weights.write_en.eq(bridge.load.valid & to_ram),
                         weights.write_data.eq(payload.data[:word_bits]),
                         weights.write_addr.eq(payload.data[word_bits:])]
        wiring.connect(m, bridge.job, engine.job)
        m.d.comb += [bridge.done.eq(engine.done), bridge.error.eq(engine.error),
                     bridge.cycles.eq(engine.cycles),
                     engine.read_addr.eq(bridge.read_addr),
                     bridge.read_data.eq(engine.read_data)]

        if platform is None:
            m.d.comb += [receiver.rx.eq(self.uart_rx), self.uart_tx.eq(transmitter.tx)]
            return m

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx_pin = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_pin = io.Buffer("o", uart.tx)
        m.d.comb += [receiver.rx.eq(rx_pin.i), tx_pin.o.eq(transmitter.tx)]
        heartbeat = Signal(HEARTBEAT_BITS)
        m.d.sync += heartbeat.eq(heartbeat + 1)
        for index, value in ((0, engine.done), (1, engine.error),
                             (2, receiver.framing_error | receiver.overrun),
                             (7, heartbeat[-1])):
            m.submodules[f"led_{index}"] = led = io.Buffer("o", platform.request("led", index,
                                                                                  dir="-"))
            m.d.comb += led.o.eq(value)
        return m


def weight_load(word: int, word_addr: int, data_width: int) -> int:
    """The LOAD data that writes ``word`` at word ``word_addr`` of the weight RAM."""
    return word | word_addr << data_width


def weight_ram_depth(weight_words: int) -> int:
    """Words of the board's weight RAM for ``weight_words`` words: the next power of two."""
    return 1 << max(1, (weight_words - 1).bit_length())
