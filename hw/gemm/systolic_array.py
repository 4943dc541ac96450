"""The ``R x C`` weight-stationary systolic array with its input skew and output de-skew."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_positive
from hw.gemm.pe import ProcessingElement


class SystolicArray(wiring.Component):
    """Multiplies a stream of activation rows by a stationary ``R x C`` weight tile.

    Row ``r`` of the array multiplies input element ``r``; column ``c`` produces output ``c``, so
    an input vector ``a`` (``R`` elements) gives ``sum_r a[r] * tile[bank][r][c]`` in column
    ``c``. Inputs are skewed on the way in (row ``r`` delayed ``r`` cycles) and the column sums
    de-skewed on the way out, so a vector presented at cycle ``t`` has all its ``C`` sums on
    ``psum`` at cycle ``t + latency``; one vector can be presented every cycle. The bank bit
    travels with each vector, so vectors of two tiles can be in flight at once.

    Weight rows are written by ``weight_we``: row ``weight_row_index`` of bank ``weight_bank``
    takes ``weight_row`` at the next clock edge.

    Parameters
    ----------
    rows, cols : int
        ``R`` and ``C``.
    data_width, acc_width : int
        Weight (and by default activation) and partial-sum widths (signed).
    act_width : int or None
        Activation width (signed); ``data_width`` by default.

    Members
    -------
    act : In(ArrayLayout(signed(act_width), rows))
        Input vector.
    bank : In(1)
        Weight bank for ``act``.
    psum : Out(ArrayLayout(signed(acc_width), cols))
        Column sums of the vector presented ``latency`` cycles earlier.
    weight_row : In(ArrayLayout(signed(data_width), cols))
        One row of a weight tile.
    weight_row_index : In(range(rows))
        Array row written.
    weight_bank : In(1)
        Bank written.
    weight_we : In(1)
        Write enable.

    Raises
    ------
    ValueError
        If a dimension or width is not a positive integer.
    """

    def __init__(self, *, rows: int, cols: int, data_width: int = 8, acc_width: int = 32,
                 act_width: int | None = None):
        self._rows = check_positive(rows, "Array rows")
        self._cols = check_positive(cols, "Array columns")
        self._data_width = check_positive(data_width, "Data width")
        act_width = data_width if act_width is None else act_width
        self._act_width = check_positive(act_width, "Activation width")
        self._acc_width = check_positive(acc_width, "Accumulator width")
        super().__init__({
            "act": In(data.ArrayLayout(signed(act_width), rows)),
            "bank": In(1),
            "psum": Out(data.ArrayLayout(signed(acc_width), cols)),
            "weight_row": In(data.ArrayLayout(signed(data_width), cols)),
            "weight_row_index": In(range(rows)),
            "weight_bank": In(1),
            "weight_we": In(1),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def latency(self) -> int:
        """Cycles from a vector on ``act`` to its sums on ``psum``: ``rows + cols - 1``."""
        return self._rows + self._cols - 1

    def elaborate(self, platform):
        m = Module()
        rows, cols = self._rows, self._cols
        pes = [[ProcessingElement(data_width=self._data_width, acc_width=self._acc_width,
                                  act_width=self._act_width)
                for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pe = pes[r][c]
                m.d.comb += [
                    pe.weight.eq(self.weight_row[c]),
                    pe.weight_bank.eq(self.weight_bank),
                    pe.weight_we.eq(self.weight_we & (self.weight_row_index == r)),
                ]
                if c > 0:
                    m.d.comb += [pe.act_in.eq(pes[r][c - 1].act_out),
                                 pe.bank_in.eq(pes[r][c - 1].bank_out)]
                if r > 0:
                    m.d.comb += pe.psum_in.eq(pes[r - 1][c].psum_out)
                else:
                    m.d.comb += pe.psum_in.eq(0)

        # Input skew: row r sees the vector r cycles late, as the wavefront reaches it.
        for r in range(rows):
            act, bank = self.act[r], self.bank
            for stage in range(r):
                act_reg = Signal(signed(self._act_width), name=f"skew_act_{r}_{stage}")
                bank_reg = Signal(name=f"skew_bank_{r}_{stage}")
                m.d.sync += [act_reg.eq(act), bank_reg.eq(bank)]
                act, bank = act_reg, bank_reg
            m.d.comb += [pes[r][0].act_in.eq(act), pes[r][0].bank_in.eq(bank)]

        # Output de-skew: column c finishes c cycles after column 0; delay it cols-1-c more.
        for c in range(cols):
            psum = pes[rows - 1][c].psum_out
            for stage in range(cols - 1 - c):
                psum_reg = Signal(signed(self._acc_width), name=f"deskew_psum_{c}_{stage}")
                m.d.sync += psum_reg.eq(psum)
                psum = psum_reg
            m.d.comb += self.psum[c].eq(psum)
        return m
