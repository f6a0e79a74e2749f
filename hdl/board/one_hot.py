"""A hand-made one-hot state machine for the board's protocol FSM."""

from amaranth.hdl import Signal

__all__ = ["OneHot"]


class OneHot:
    """Each state is its own flip-flop.  A transition raises two combinational flags, "leave
    the source" and "enter the target", under whatever conditions surround it; :meth:`finish`
    then gives every state bit ``(bit & ~leave) | enter``: an OR of its own transitions, not
    a priority chain through every assignment in the module.  yosys re-encodes no FSM whose
    register has an initial value (all of Amaranth's do), and a binary state's decode made
    the longest paths of the design.

    ``with fsm.state(name):`` opens a state's block; ``fsm.goto(name)`` inside it moves on."""

    def __init__(self, m, names, init):
        self.m = m
        self.bits = {name: Signal(name=f"st_{name.lower()}", init=name == init) for name in names}
        self._enter = {name: Signal(name=f"enter_{name.lower()}") for name in names}
        self._leave = {name: Signal(name=f"leave_{name.lower()}") for name in names}
        self._current = None

    def state(self, name):
        self._current = name
        return self.m.If(self.bits[name])

    @property
    def active(self):
        """The flip-flop of the state whose block is open."""
        return self.bits[self._current]

    def goto(self, name):
        self.m.d.comb += [self._leave[self._current].eq(1), self._enter[name].eq(1)]

    def finish(self):
        for name, bit in self.bits.items():
            self.m.d.sync += bit.eq((bit & ~self._leave[name]) | self._enter[name])

    def __getitem__(self, name):
        return self.bits[name]
