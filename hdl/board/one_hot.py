"""A hand-made one-hot state machine for the board's protocol FSM."""

from amaranth.hdl import Signal

__all__ = ["OneHot"]


class OneHot:
    """Each state is its own flip-flop, and a transition clears its source and sets its
    target, so a state's next value depends only on its own transitions.  yosys re-encodes
    no FSM whose register has an initial value (all of Amaranth's do), and a binary state's
    decode made the longest paths of the design.

    ``with fsm.state(name):`` opens a state's block; ``fsm.goto(name)`` inside it moves on."""

    def __init__(self, m, names, init):
        self.m = m
        self.bits = {name: Signal(name=f"st_{name.lower()}", init=name == init) for name in names}
        self._current = None

    def state(self, name):
        self._current = name
        return self.m.If(self.bits[name])

    def goto(self, name):
        self.m.d.sync += [self.bits[self._current].eq(0), self.bits[name].eq(1)]

    def __getitem__(self, name):
        return self.bits[name]
