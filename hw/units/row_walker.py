"""Row control of the row units: the walker that visits one row slot at a time, one beat per
step, the counters between walkers, and the shape of a row in beats."""

from dataclasses import dataclass

from amaranth.hdl import Module, Mux, Signal, Value


@dataclass
class RowWalker:
    """Signals of one walker (see :func:`add_row_walker`)."""

    active: Signal      #: a row is being walked
    beat: Signal        #: its current beat
    slot: Signal        #: its slot
    fire: Value         #: the current beat goes this cycle
    last: Value         #: the current beat is the row's last
    finishing: Value    #: the row's last beat goes this cycle
    start: Value        #: the walker takes the next row (it begins next cycle)


def add_row_walker(m: Module, name: str, *, slots: int, max_beats: int, beats: Value,
                   step: Value, can_start: Value) -> RowWalker:
    """Add a walker to ``m``: rows take slots ``0, 1, .., slots - 1, 0, ..`` in order.

    Timing (``sw.cycle_model.units``): the walker decides to take the next row in a cycle where
    it is idle or finishing a row and ``can_start`` is high, and walks it from the next cycle;
    each cycle with ``step`` high advances one beat of ``beats``.
    """
    active = Signal(name=f"{name}_active")
    beat = Signal(range(max_beats), name=f"{name}_beat")
    slot = Signal(range(slots), name=f"{name}_slot")
    upcoming = Signal(range(slots), name=f"{name}_upcoming")
    fire = active & step
    last = beat == beats - 1
    finishing = fire & last
    start = Signal(name=f"{name}_start")
    m.d.comb += start.eq((~active | finishing) & can_start)
    with m.If(start):
        m.d.sync += [active.eq(1), beat.eq(0), slot.eq(upcoming),
                     upcoming.eq(Mux(upcoming == slots - 1, 0, upcoming + 1))]
    with m.Elif(finishing):
        m.d.sync += active.eq(0)
    with m.Elif(fire):
        m.d.sync += beat.eq(beat + 1)
    return RowWalker(active=active, beat=beat, slot=slot, fire=fire, last=last,
                     finishing=finishing, start=start)


def add_counter(m: Module, name: str, *, limit: int, init: int, up: Value, down: Value) -> Signal:
    """A register counting ``up`` events minus ``down`` events, within ``0 .. limit``."""
    counter = Signal(range(limit + 1), init=init, name=name)
    with m.If(up & ~down):
        m.d.sync += counter.eq(counter + 1)
    with m.Elif(down & ~up):
        m.d.sync += counter.eq(counter - 1)
    return counter


def lane_mask(m: Module, name: str, *, lanes: int, beat, beats, last_lanes) -> Signal:
    """Lanes holding elements of the row in ``beat``: all but the last beat's lanes past the row
    length (combinational)."""
    mask = Signal(lanes, name=name)
    for lane in range(lanes):
        m.d.comb += mask[lane].eq((beat != beats - 1) | (last_lanes > lane))
    return mask


def row_shape(m: Module, length, lanes: int, max_beats: int):
    """``(beats, last_lanes)`` of a row of ``length`` elements (combinational)."""
    beats = Signal(range(max_beats + 1), name="beats")
    last_lanes = Signal(range(lanes + 1), name="last_lanes")
    m.d.comb += [beats.eq((length + lanes - 1) // lanes),
                 last_lanes.eq(length - (beats - 1) * lanes)]
    return beats, last_lanes
