"""The board's top level: a layer engine behind the UART host bridge.

On a platform (``amaranth_boards.ulx3s.ULX3S_85F_Platform``) the bridge's serial line is the
board's ``uart`` resource (the FTDI USB serial port) and the LEDs show ``done`` (LED 0),
``error`` (LED 1), a received framing error or overrun (LED 2) and a heartbeat (LED 7);
without a platform (simulation) the serial line is the ``uart_rx`` / ``uart_tx`` attributes.
The engine runs in the platform's default clock domain (the board's 25 MHz oscillator).
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Signal, Value
from amaranth.lib import io, wiring

from hw.board.uart import UartRx, UartTx
from hw.board.uart_bridge import HostBridge

__all__ = ["HEARTBEAT_BITS", "BoardTop"]

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

    Attributes
    ----------
    uart_rx, uart_tx : Signal
        The serial line when elaborated without a platform (``uart_rx`` idles high).
    bridge : HostBridge
    """

    def __init__(self, engine: wiring.Component, *, divisor: int):
        self.engine = engine
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
        wiring.connect(m, bridge.load, engine.load)
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
