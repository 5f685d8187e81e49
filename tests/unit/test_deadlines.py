"""The receiver's time limits for slow clients (`_receiver/_deadlines.py`), on a real event loop
with short limits; the HTTP-level behaviour is in tests/test_receiver.py."""

from __future__ import annotations

import asyncio

import pytest

from trigger_nb._receiver import _deadlines
from trigger_nb._receiver._deadlines import Deadlines


class Request:
    def __init__(self) -> None:
        self.stalls = 0
        self.closed = False

    def stalled(self) -> None:
        self.stalls += 1

    def gone(self) -> bool:
        return self.closed


@pytest.fixture(autouse=True)
def fast_sweeps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deadlines, "SWEEP_S", 0.01)


def test_a_request_past_its_limit_is_stalled_once_and_the_others_are_not() -> None:
    async def scenario() -> tuple[Request, Request, Request, Deadlines]:
        deadlines = Deadlines()
        slow, done, patient = Request(), Request(), Request()
        deadlines.watch(slow, 0.03)
        deadlines.watch(done, 0.03)
        deadlines.watch(patient, 10.0)
        deadlines.forget(done)
        await asyncio.sleep(0.15)
        return slow, done, patient, deadlines

    slow, done, patient, deadlines = asyncio.run(scenario())
    assert (slow.stalls, done.stalls, patient.stalls) == (1, 0, 0)
    deadlines.close()


def test_watching_again_restarts_the_limit() -> None:
    async def scenario() -> Request:
        deadlines = Deadlines()
        request = Request()
        deadlines.watch(request, 0.08)  # its headers...
        await asyncio.sleep(0.05)
        deadlines.watch(request, 0.08)  # ...are in: now its body has the whole limit
        await asyncio.sleep(0.05)
        assert request.stalls == 0  # 0.10 s after the first watch, 0.05 s after the second
        await asyncio.sleep(0.1)
        deadlines.close()
        return request

    assert asyncio.run(scenario()).stalls == 1


def test_a_request_whose_connection_is_gone_is_dropped_not_stalled() -> None:
    async def scenario() -> tuple[Request, int]:
        deadlines = Deadlines()
        request = Request()
        deadlines.watch(request, 0.05)
        request.closed = True
        await asyncio.sleep(0.03)  # a sweep or two: dropped before its limit
        held = len(deadlines._due)
        await asyncio.sleep(0.1)
        return request, held

    request, held = asyncio.run(scenario())
    assert held == 0 and request.stalls == 0


def test_the_sweep_stops_when_nothing_is_watched_and_starts_again() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        deadlines = Deadlines()
        first = Request()
        deadlines.watch(first, 0.01)
        await asyncio.sleep(0.05)
        idle = deadlines._sweep is None  # nothing left: no timer keeps the loop busy
        second = Request()
        deadlines.watch(second, 0.01)
        armed = deadlines._sweep is not None
        await asyncio.sleep(0.05)
        return idle, armed, second.stalls

    assert asyncio.run(scenario()) == (True, True, 1)
