"""One processing element of the weight-stationary systolic array."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_positive


class ProcessingElement(wiring.Component):
    """A signed multiply-accumulate cell with two weight banks.

    Every cycle it passes the activation (and the bank bit travelling with it) to its right
    neighbour and the partial sum ``psum_in + act_in * weight[bank_in]`` to the cell below; both
    outputs are registered. The bank not in use can be rewritten meanwhile, which is what lets
    the next tile's weights load while the current tile computes. The partial sum wraps at
    ``acc_width`` bits, as an int register does.

    Parameters
    ----------
    data_width : int
        Width of weights (signed), and of activations unless ``act_width`` is given.
    act_width : int or None
        Width of activations (signed); ``data_width`` by default.
    acc_width : int
        Width of partial sums (signed).

    Members
    -------
    act_in : In(signed(act_width))
        Activation from the left.
    bank_in : In(1)
        Weight bank the activation is multiplied with.
    psum_in : In(signed(acc_width))
        Partial sum from above.
    weight : In(signed(data_width))
        Weight to store.
    weight_we : In(1)
        Store ``weight`` into bank ``weight_bank`` at the next clock edge.
    weight_bank : In(1)
        Bank written by ``weight_we``.
    act_out : Out(signed(act_width))
        ``act_in``, one cycle later.
    bank_out : Out(1)
        ``bank_in``, one cycle later.
    psum_out : Out(signed(acc_width))
        ``psum_in + act_in * weight[bank_in]``, one cycle later.

    Raises
    ------
    ValueError
        If a width is not a positive integer, or ``acc_width < act_width + data_width`` (the
        product's width).
    """

    def __init__(self, *, data_width: int = 8, acc_width: int = 32,
                 act_width: int | None = None):
        self._data_width = check_positive(data_width, "Data width")
        act_width = data_width if act_width is None else act_width
        self._act_width = check_positive(act_width, "Activation width")
        self._acc_width = check_positive(acc_width, "Accumulator width")
        if acc_width < act_width + data_width:
            raise ValueError(f"Accumulator width must be at least the activation plus weight "
                             f"widths ({act_width + data_width}), not {acc_width}")
        super().__init__({
            "act_in": In(signed(act_width)),
            "bank_in": In(1),
            "psum_in": In(signed(acc_width)),
            "weight": In(signed(data_width)),
            "weight_we": In(1),
            "weight_bank": In(1),
            "act_out": Out(signed(act_width)),
            "bank_out": Out(1),
            "psum_out": Out(signed(acc_width)),
        })

    @property
    def data_width(self) -> int:
        return self._data_width

    @property
    def act_width(self) -> int:
        return self._act_width

    @property
    def acc_width(self) -> int:
        return self._acc_width

    def elaborate(self, platform):
        m = Module()
        banks = [Signal(signed(self._data_width), name=f"weight_bank_{b}") for b in range(2)]
        for index, bank in enumerate(banks):
            with m.If(self.weight_we & (self.weight_bank == index)):
                m.d.sync += bank.eq(self.weight)
        weight = Mux(self.bank_in, banks[1], banks[0])
        m.d.sync += [
            self.act_out.eq(self.act_in),
            self.bank_out.eq(self.bank_in),
            self.psum_out.eq(self.psum_in + self.act_in * weight),
        ]
        return m
