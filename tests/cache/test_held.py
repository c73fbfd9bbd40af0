"""Writes held while Redis cannot take them: bounded, and aged by the time they waited."""

from __future__ import annotations

from signer.cache.backends.held import MIN_LEFT_MS, HeldWrites


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_held_write_loses_the_time_it_waited() -> None:
    clock = Clock()
    held = HeldWrites(10, clock)
    held.hold([(b"a", b"x", 60_000), (b"b", b"y", 5_000)])
    clock.now += 4.5  # b now has 500 ms left: below MIN_LEFT_MS, not worth storing
    assert MIN_LEFT_MS > 500
    assert held.take() == ([(b"a", b"x", 55_500)], 1)
    assert len(held) == 0


def test_holds_no_more_than_its_limit() -> None:
    held = HeldWrites(2, Clock())
    assert held.hold([(b"a", b"", 9_000), (b"b", b"", 9_000), (b"c", b"", 9_000)]) == 1
    assert held.hold([(b"d", b"", 9_000)]) == 1
    assert [name for name, _, _ in held.take()[0]] == [b"a", b"b"]
