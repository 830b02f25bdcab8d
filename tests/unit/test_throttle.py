"""The migration mover's keys/s throttle (dashboard.migrate.mover.Throttle), on a fake clock:
it paces to the rate, and a rate changed while it waits applies within one slice."""

from __future__ import annotations

from dashboard.migrate.mover import Throttle


class Clock:
    def __init__(self) -> None:
        self.t = 100.0
        self.sleeps: list[float] = []
        self.on_sleep = lambda: None

    def __call__(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s
        self.on_sleep()


async def test_paces_to_the_rate() -> None:
    clock, rate = Clock(), [10]
    th = Throttle(lambda: rate[0], clock, clock.sleep)
    start = clock.t
    for _ in range(5):
        await th.take(20)  # 100 keys at 10 keys/s: 10 s
    assert abs((clock.t - start) - 10.0) < 1e-6
    assert max(clock.sleeps) <= Throttle.SLICE + 1e-9


async def test_unlimited_never_waits() -> None:
    clock = Clock()
    th = Throttle(lambda: 0, clock, clock.sleep)
    await th.take(10**6)
    assert clock.sleeps == []


async def test_a_limit_removed_mid_wait_applies_within_a_slice() -> None:
    clock, rate = Clock(), [5]
    th = Throttle(lambda: rate[0], clock, clock.sleep)

    def lift() -> None:
        if clock.t - 100.0 >= 1.0:
            rate[0] = 0
    clock.on_sleep = lift
    await th.take(100)  # 20 s at 5 keys/s
    assert clock.t - 100.0 <= 1.0 + Throttle.SLICE
    await th.take(100)  # unlimited now
    assert clock.t - 100.0 <= 1.0 + Throttle.SLICE


async def test_a_limit_raised_mid_wait_applies_within_a_slice() -> None:
    clock, rate = Clock(), [5]
    th = Throttle(lambda: rate[0], clock, clock.sleep)

    def raise_it() -> None:
        if clock.t - 100.0 >= 1.0:
            rate[0] = 1000
    clock.on_sleep = raise_it
    await th.take(100)  # 5 keys owed after 1 s... then 95 more at 1000 keys/s
    assert clock.t - 100.0 <= 1.0 + Throttle.SLICE + 0.1
