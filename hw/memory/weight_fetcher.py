"""The layer engine's weight fetcher: an AXI4 read manager streaming weight words into a FIFO.

A GEMM whose weights live in external memory starts the fetcher with the first byte and the
number of its weight words. The fetcher reads them in order with INCR bursts of up to
``burst_beats`` words (one word per beat: the data bus is one weight word), keeps at most
``max_outstanding`` bursts in flight, and asks for a burst only when the stream buffer (a FIFO
of ``depth`` words) has room for everything already asked for plus that burst, so ``rready``
is always high and the bus is never stalled by this side. The GEMM core takes the words from
``o``, one tile (``tile_words`` words) at a time: before it schedules a tile it *claims* the
tile's words (``claim``), which it may do once ``tile_ready`` says that that many unclaimed
words have arrived. ``sw.cycle_model.weight_stream`` is the timing specification.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.memory.axi import BURST_INCR, AxiReadSignature

__all__ = ["ADDRESS_WIDTH", "WeightFetcher"]

#: Bits of an external byte address.
ADDRESS_WIDTH = 32


class WeightFetcher(wiring.Component):
    """Fetches ``words`` weight words from byte ``base`` into a FIFO (see the module docstring).

    Parameters
    ----------
    word_shape : ShapeLike
        One weight word; its width in bytes is a power of two (the AXI data bus).
    depth : int
        Words of the stream buffer; at least ``tile_words + burst_beats`` (so a burst always
        fits while a tile waits).
    burst_beats, max_outstanding, tile_words, max_words : int

    Members
    -------
    start : In(1)
        Latches ``base`` and ``words``; only while the previous job's words are all taken.
    base : In(ADDRESS_WIDTH)
        First byte; a multiple of ``burst_beats`` words.
    words : In(range(max_words + 1))
    axi : Out(AxiReadSignature)
    o : Out(stream.Signature(word_shape))
        The words in order.
    tile_ready : Out(1)
        At least ``tile_words`` words have arrived that are not claimed.
    claim : In(1)
        Claims ``tile_words`` words (only with ``tile_ready``).
    """

    def __init__(self, *, word_shape, depth: int, burst_beats: int, max_outstanding: int,
                 tile_words: int, max_words: int):
        word_bits = data.Layout.cast(word_shape).size if isinstance(word_shape, data.Layout) \
            else word_shape.width
        word_bytes = word_bits // 8
        if word_bits % 8 or word_bytes & (word_bytes - 1):
            raise ValueError(f"A weight word of {word_bits} bits is not a power of two of bytes")
        if depth < tile_words + burst_beats:
            raise ValueError(f"A stream buffer of {depth} words cannot hold a tile "
                             f"({tile_words}) and a burst ({burst_beats})")
        self._word_shape, self._word_bytes = word_shape, word_bytes
        self._depth, self._burst_beats = depth, burst_beats
        self._max_outstanding, self._tile_words = max_outstanding, tile_words
        self._max_words = max_words
        super().__init__({
            "start": In(1),
            "base": In(ADDRESS_WIDTH),
            "words": In(range(max_words + 1)),
            "axi": Out(AxiReadSignature(addr_width=ADDRESS_WIDTH, data_width=word_bits)),
            "o": Out(stream.Signature(word_shape)),
            "tile_ready": Out(1),
            "claim": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth, beats = self._depth, self._burst_beats
        axi = self.axi
        m.submodules.buffer = buffer = fifo.SyncFIFOBuffered(
            width=len(axi.rdata), depth=depth)
        received = axi.rvalid                  # rready is always high
        popped = self.o.valid & self.o.ready
        m.d.comb += [axi.rready.eq(1), buffer.w_en.eq(received), buffer.w_data.eq(axi.rdata),
                     self.o.valid.eq(buffer.r_rdy), self.o.payload.eq(buffer.r_data),
                     buffer.r_en.eq(self.o.ready)]

        to_request = Signal(range(self._max_words + 1))    # words not yet asked for
        next_addr = Signal(ADDRESS_WIDTH)
        outstanding = Signal(range(self._max_outstanding + 1))   # bursts without their rlast
        inflight = Signal(range(depth + 1))                # words asked for, not arrived
        held = Signal(range(depth + 1))                    # words arrived, not taken
        unclaimed = Signal(range(depth + 1))               # words arrived, not claimed
        m.d.comb += [axi.arburst.eq(BURST_INCR), axi.arid.eq(0),
                     axi.arsize.eq(self._word_bytes.bit_length() - 1),
                     self.tile_ready.eq(unclaimed >= self._tile_words)]

        granted = axi.arvalid & axi.arready
        length = axi.arlen + 1
        requested_now = Mux(self.start, self.words, to_request)
        addr_now = Mux(self.start, self.base, next_addr)
        # the state after this cycle's events
        to_request_after = requested_now - Mux(granted, length, 0)
        addr_after = addr_now + Mux(granted, length * self._word_bytes, 0)
        outstanding_after = outstanding + granted - (received & axi.rlast)
        inflight_after = inflight + Mux(granted, length, 0) - received
        held_after = held + received - popped
        m.d.sync += [to_request.eq(to_request_after), next_addr.eq(addr_after),
                     outstanding.eq(outstanding_after), inflight.eq(inflight_after),
                     held.eq(held_after),
                     unclaimed.eq(unclaimed + received - Mux(self.claim, self._tile_words, 0))]

        # present the next burst once the current one is granted (or none is presented)
        next_length = Mux(to_request_after > beats, beats, to_request_after)
        with m.If(~axi.arvalid | granted):
            m.d.sync += [
                axi.arvalid.eq((to_request_after != 0)
                               & (outstanding_after < self._max_outstanding)
                               & (held_after + inflight_after + next_length <= depth)),
                axi.araddr.eq(addr_after), axi.arlen.eq(next_length - 1)]
        return m
