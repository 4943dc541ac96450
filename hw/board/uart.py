"""A small 8N1 UART (receiver and transmitter) for the board's host bridge.

Amaranth's standard library has no UART. These two components move one byte at a time
between a serial line and an ``amaranth.lib.stream`` of 8-bit payloads: 8 data bits, least
significant first, no parity, one stop bit; the line idles high. The bit time is
``divisor`` clock cycles (``divisor = round(clock_hz / baud)``, see :func:`baud_divisor`).
"""

from amaranth import Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "baud_divisor", "UartRx", "UartTx"]

#: Fewest clock cycles per bit: the receiver samples mid-bit, half a bit after the start edge.
MIN_DIVISOR = 4

#: Largest relative error of the bit time that ``baud_divisor`` accepts (2 %: an 8N1 frame
#: is sampled ten times, so the last sample stays well inside its bit).
MAX_BAUD_ERROR = 0.02


def _check_divisor(component, divisor) -> int:
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < MIN_DIVISOR:
        # a component refused at construction was never meant to be used: no warning later
        component._MustUse__silence = True
        raise ValueError(f"Divisor must be an integer of at least {MIN_DIVISOR}, "
                         f"not {divisor!r}")
    return divisor


def baud_divisor(clock_hz: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` on a ``clock_hz`` clock.

    >>> baud_divisor(25e6, 115200)
    217

    Raises
    ------
    ValueError
        If the nearest whole divisor is below :data:`MIN_DIVISOR` or misses ``baud`` by more
        than :data:`MAX_BAUD_ERROR`.
    """
    if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
        raise ValueError(f"Baud rate must be a positive integer, not {baud!r}")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"Baud rate {baud} is too fast for a {clock_hz:g} Hz clock: "
                         f"{clock_hz / baud:.2f} cycles per bit, at least {MIN_DIVISOR} needed")
    error = abs(clock_hz / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"Baud rate {baud} on a {clock_hz:g} Hz clock: divisor {divisor} "
                         f"misses it by {error:.1%}, more than {MAX_BAUD_ERROR:.0%}")
    return divisor


class UartRx(wiring.Component):
    """Serial line in, bytes out.

    The line passes a two-flip-flop synchronizer. A falling edge starts a frame; the start
    bit is checked half a bit later, then each data bit and the stop bit are sampled one bit
    time apart (mid-bit). A frame whose stop bit is low is dropped and sets ``framing_error``.
    A byte waits in ``bytes`` until taken; a byte that completes while the previous one still
    waits is dropped and sets ``overrun``. Both flags are sticky.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    rx : In(1, init=1)
        The serial line (asynchronous).
    bytes : Out(stream.Signature(8))
        Received bytes.
    framing_error : Out(1)
    overrun : Out(1)

    Raises
    ------
    ValueError
        ``Divisor must be an integer of at least 4, not 2``.
    """

    rx: In(1, init=1)
    bytes: Out(stream.Signature(unsigned(8)))
    framing_error: Out(1)
    overrun: Out(1)

    def __init__(self, *, divisor: int):
        self._divisor = _check_divisor(self, divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.synchronizer = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self._divisor))
        bit = Signal(range(8))
        shift = Signal(8)

        with m.If(self.bytes.ready):
            m.d.sync += self.bytes.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self._divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self._divisor - 1), bit.eq(0)]
                    # a glitch shorter than half a bit is not a start bit
                    with m.If(line):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self._divisor - 1), shift.eq(shift >> 1 | line << 7),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.sync += self.framing_error.eq(1)
                    with m.Elif(self.bytes.valid & ~self.bytes.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.bytes.payload.eq(shift), self.bytes.valid.eq(1)]
                    # after a low stop bit, wait for the line to go high before the next frame
                    with m.If(line):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Bytes in, serial line out: each byte as a start bit, 8 data bits (least significant
    first) and a stop bit, ``divisor`` cycles each; the line idles high.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    bytes : In(stream.Signature(8))
        Bytes to send; one is taken in the last cycle of the previous frame's stop bit (or
        at once when idle).
    tx : Out(1, init=1)
        The serial line.

    Raises
    ------
    ValueError
        ``Divisor must be an integer of at least 4, not 2``.
    """

    bytes: In(stream.Signature(unsigned(8)))
    tx: Out(1, init=1)

    def __init__(self, *, divisor: int):
        self._divisor = _check_divisor(self, divisor)
        super().__init__()

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        # start bit, 8 data bits, stop bit, shifted out least significant first
        frame = Signal(10, init=0x3FF)
        bits_left = Signal(range(11))

        # the next byte is taken in the stop bit's last cycle, so that back-to-back frames
        # are exactly 10 bit times apart (an echo of a receiver at the same rate never drifts)
        last_cycle = (bits_left == 1) & (timer == 0)
        m.d.comb += self.bytes.ready.eq((bits_left == 0) | last_cycle)
        with m.If(self.bytes.valid & self.bytes.ready):
            m.d.sync += [frame.eq(self.bytes.payload << 1 | 1 << 9), bits_left.eq(10),
                         timer.eq(self._divisor - 1), self.tx.eq(0)]
        with m.Elif(bits_left != 0):
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [timer.eq(self._divisor - 1), bits_left.eq(bits_left - 1),
                             frame.eq(frame >> 1 | 1 << 9), self.tx.eq(frame[1])]
        return m
