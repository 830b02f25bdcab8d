"""The migration mover's adaptive pace (dashboard/migrate/pacing.py), without sockets: a model
source whose MIGRATE takes `fixed + per_key * keys` seconds."""

from __future__ import annotations

import random

import pytest

from dashboard.migrate.mover import Settings, StallMeter
from dashboard.migrate.pacing import MIN_PAUSE, PaceController, PaceLimits


def run(pace: PaceController, rounds: int, per_key: float, fixed: float = 0.0001,
        noise: float = 0.0, seed: int = 1) -> list[int]:
    rnd = random.Random(seed)
    sizes = []
    for _ in range(rounds):
        n = pace.size()
        sizes.append(n)
        pace.on_stall(n, (fixed + per_key * n) * (1 + rnd.uniform(-noise, noise)))
    return sizes


def test_converges_to_the_largest_batch_within_the_stall_budget() -> None:
    lim = PaceLimits(target_stall=0.0005, min_batch=10, max_batch=1000)
    # 6 us a key + 0.1 ms: the budget fits (0.5 - 0.1) / 0.006 = 66 keys
    for start in (10, 500, 1000):
        pace = PaceController(lim, start=start)
        tail = run(pace, 300, per_key=6e-6)[-100:]
        # dithered by 1/16 around the ideal, at most one step (an eighth) over it
        assert min(tail) >= 50 and max(tail) <= 66 * 9 // 8 + 6, (start, min(tail), max(tail))


def test_follows_a_source_that_gets_slower_and_faster() -> None:
    pace = PaceController(PaceLimits(target_stall=0.001, min_batch=5, max_batch=2000), start=5)
    fast = run(pace, 300, per_key=2e-6)[-50:]
    slow = run(pace, 300, per_key=20e-6)[-50:]
    fast_again = run(pace, 300, per_key=2e-6)[-50:]
    assert min(fast) > 300 and max(slow) < 60 and min(fast_again) > 300


def test_one_slow_sample_at_most_halves_the_batch() -> None:
    pace = PaceController(PaceLimits(target_stall=0.001, max_batch=1000), start=800)
    pace.on_stall(800, 1.0)  # a context switch, a page fault storm: a second
    assert pace.batch == 400


def test_a_short_page_does_not_grow_the_batch() -> None:
    pace = PaceController(PaceLimits(target_stall=0.001), start=100)
    for _ in range(50):
        pace.on_stall(3, 0.00001)  # the tail of a SCAN page: proves nothing about 100+
    assert pace.batch == 100


@pytest.mark.parametrize("seed", range(5))
def test_never_leaves_its_bounds(seed: int) -> None:
    rnd = random.Random(seed)
    lim = PaceLimits(target_stall=0.0005, min_batch=20, max_batch=300, max_pause=0.02)
    pace = PaceController(lim, start=5000)
    pace.set_baseline(0.0001)
    assert pace.batch == 300
    for _ in range(5000):
        if rnd.random() < 0.3:
            pace.on_latency(rnd.choice([0.00005, 0.0001, 0.01, 1.0]))
        else:
            pace.on_stall(rnd.randrange(1, 400), rnd.choice([0.0, 1e-5, 0.0004, 0.003, 2.0]))
        assert 20 <= pace.batch <= 300
        assert 0 <= pace.pause <= 0.02


def test_backs_off_while_latency_is_high_and_recovers() -> None:
    lim = PaceLimits(target_stall=0.001, latency_factor=1.5, latency_slack=0, max_pause=0.05)
    pace = PaceController(lim, start=100)
    pace.set_baseline(0.0002)
    pace.on_latency(0.0002)
    assert pace.pause == 0
    for _ in range(40):
        pace.on_latency(0.002)  # 10x the baseline, for a while
    assert pace.pause == lim.max_pause and pace.high
    batch = pace.batch
    run(pace, 20, per_key=1e-6)  # stalls far under budget: no growth while latency is high
    assert pace.batch == batch
    for _ in range(60):
        pace.on_latency(0.0002)  # back to normal: the rest halves away
    assert pace.pause == 0 and not pace.high
    run(pace, 5, per_key=1e-6)
    assert pace.batch > batch


def test_one_late_latency_sample_does_not_stop_the_mover() -> None:
    pace = PaceController(PaceLimits(latency_factor=1.5, latency_slack=0), start=100)
    pace.set_baseline(0.0002)
    for _ in range(20):
        pace.on_latency(0.0002)
    pace.on_latency(0.0006)  # 3x once: smoothed, it stays under 1.5x
    assert pace.pause == 0


def test_a_small_absolute_rise_is_not_a_reason_to_rest() -> None:
    # a PING of 50 us read at 120 us: 2.4x, but 70 us is nothing a client notices
    pace = PaceController(PaceLimits(latency_factor=1.5, latency_slack=0.0002), start=100)
    pace.set_baseline(0.00005)
    for _ in range(50):
        pace.on_latency(0.00012)
    assert pace.pause == 0 and not pace.high
    for _ in range(50):
        pace.on_latency(0.0004)  # 350 us above: rest
    assert pace.pause > 0 and pace.high


def test_no_baseline_no_latency_loop() -> None:
    pace = PaceController(PaceLimits(), start=100)
    pace.on_latency(10.0)
    assert pace.pause == 0 and not pace.high


def test_rests_start_small_and_double() -> None:
    pace = PaceController(PaceLimits(max_pause=1.0), start=100)
    pace.set_baseline(0.001)
    pauses = []
    for _ in range(4):
        pace.on_latency(1.0)
        pauses.append(pace.pause)
    assert pauses == [MIN_PAUSE, 2 * MIN_PAUSE, 4 * MIN_PAUSE, 8 * MIN_PAUSE]


def test_new_limits_clamp_what_was_learnt() -> None:
    pace = PaceController(PaceLimits(max_batch=1000, max_pause=1.0), start=900)
    pace.set_baseline(0.001)
    for _ in range(30):
        pace.on_latency(1.0)
    pace.set_limits(PaceLimits(max_batch=50, max_pause=0.01))
    assert pace.batch == 50 and pace.pause == 0.01


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        PaceLimits(min_batch=0)
    with pytest.raises(ValueError):
        PaceLimits(min_batch=100, max_batch=10)
    with pytest.raises(ValueError):
        PaceLimits(target_stall=0)


def test_settings_carry_the_pace_and_refuse_inverted_bounds() -> None:
    s = Settings()
    assert s.update({"target_stall_ms": 2, "min_batch": 5, "max_batch": 50,
                     "adaptive": False}) == ["target_stall_ms", "min_batch", "max_batch",
                                             "adaptive"]
    lim = s.pace_limits()
    assert (lim.target_stall, lim.min_batch, lim.max_batch) == (0.002, 5, 50)
    assert s.adaptive is False
    with pytest.raises(ValueError, match="min_batch"):
        s.update({"min_batch": 60})
    assert s.min_batch == 5  # all or nothing
    with pytest.raises(ValueError, match="true or false"):
        s.update({"adaptive": 1})
    with pytest.raises(ValueError):
        s.update({"max_pause_ms": -1})


def _info(calls: int, usec: int) -> bytes:
    return (b"# Commandstats\r\ncmdstat_scan:calls=9,usec=90,usec_per_call=10.00\r\n"
            b"cmdstat_migrate:calls=%d,usec=%d,usec_per_call=1.00,rejected_calls=0,"
            b"failed_calls=0\r\ncmdstat_ping:calls=1,usec=1\r\n" % (calls, usec))


def test_stall_meter_reads_the_sources_own_migrate_time() -> None:
    m = StallMeter()
    assert m.measure(_info(10, 5000)) is None  # the first reading is the reference
    assert m.measure(_info(11, 5600)) == pytest.approx(0.0006)
    # two calls since (one of them a proxy's on-access MIGRATE): their mean
    assert m.measure(_info(13, 6600)) == pytest.approx(0.0005)
    assert m.measure(_info(13, 6600)) is None  # no call since
    assert m.measure(_info(2, 100)) is None  # CONFIG RESETSTAT or a restart: start over
    assert m.measure(_info(3, 400)) == pytest.approx(0.0003)
    assert m.measure(b"# Commandstats\r\n") is None  # never called MIGRATE
    assert m.measure(None) is None


def test_a_fixed_cost_above_the_budget_does_not_collapse_the_batch() -> None:
    # a busy host: each MIGRATE waits 2 ms for the target whatever it carries, 5 us a key;
    # shrinking would multiply the 2 ms stalls: the keys get half the 0.5 ms budget instead
    lim = PaceLimits(target_stall=0.0005, min_batch=10, max_batch=1000)
    pace = PaceController(lim, start=500)
    tail = run(pace, 300, per_key=5e-6, fixed=0.002)[-100:]
    assert min(tail) >= 40 and max(tail) <= 60, (min(tail), max(tail))
    assert pace.view()["stall_fixed_ms"] == pytest.approx(2.0, rel=0.1)


# -- the clients' latency as the proxies time it (per group) -----------------------------------

CLOCK = [0.0]


def feed(pace: PaceController, figures: dict, step: float = 0.25) -> None:
    """One reading of the proxies, `step` seconds after the previous one (a fake clock)."""
    CLOCK[0] += step
    pace.on_client_latency(CLOCK[0], figures)

def test_proxies_p99_above_its_baseline_makes_the_mover_rest() -> None:
    lim = PaceLimits(max_pause=0.004, recheck=0)
    pace = PaceController(lim, start=100)
    feed(pace, {"1": (0.0005, 0.0005)})
    assert pace.pause == 0 and not pace.high
    for _ in range(20):
        feed(pace, {"1": (0.002, 0.0005)})  # 4x the quiet p99
    assert pace.pause == lim.max_pause and pace.high
    before = pace.batch
    pace.on_stall(pace.size(), 1e-6)  # a cheap batch does not grow while clients suffer
    assert pace.batch == before
    for _ in range(20):
        feed(pace, {"1": (0.0005, 0.0005)})
    assert pace.pause == 0 and not pace.high


def test_the_worst_group_sets_the_rest() -> None:
    pace = PaceController(PaceLimits(max_pause=1.0), start=100)
    for _ in range(3):
        feed(pace, {"1": (0.0004, 0.0004),   # the source: fine
                    "2": (0.004, 0.0004)})   # the target: 10x
    assert pace.pause == 4 * MIN_PAUSE and pace.high
    view = pace.view()["clients"]
    assert view["2"]["high"] and not view["1"]["high"] and view["1"]["pause_ms"] == 0


def test_proxies_p99_within_the_slack_is_no_reason_to_rest() -> None:
    # 0.1 ms quiet p99: 0.18 ms is 1.8x, but only 80 us above (the buckets are that coarse)
    pace = PaceController(PaceLimits(client_slack=0.0001), start=100)
    for _ in range(10):
        feed(pace, {"1": (0.00018, 0.0001)})
    assert pace.pause == 0 and not pace.high


def test_no_figure_for_a_window_lets_the_rest_fade() -> None:
    pace = PaceController(PaceLimits(max_pause=1.0), start=100)
    for _ in range(5):
        feed(pace, {"1": (0.01, 0.001)})
    rest = pace.pause
    feed(pace, {"1": (None, 0.001)})  # no traffic timed: nothing to protect
    assert pace.pause == rest / 2 and not pace.high


def test_no_client_baseline_no_client_loop() -> None:
    pace = PaceController(PaceLimits(), start=100)
    feed(pace, {"1": (1.0, None)})
    assert pace.pause == 0 and not pace.high and pace.budget() == PaceLimits().target_stall


def test_the_stall_budget_is_a_share_of_the_clients_p99() -> None:
    lim = PaceLimits(target_stall=0.0005, stall_share=0.5, min_batch=5, max_batch=1000)
    pace = PaceController(lim, start=200)
    assert pace.budget() == 0.0005
    feed(pace, {"1": (0.0004, 0.0004), "2": (0.0006, 0.0006)})
    assert pace.budget() == pytest.approx(0.0002)  # half the lower group's p99
    # 5 us a key + 20 us: (0.2 - 0.02) / 0.005 = 36 keys
    tail = run(pace, 300, per_key=5e-6, fixed=0.00002)[-100:]
    assert max(tail) <= 36 * 9 // 8 + 3 and min(tail) >= 25, (min(tail), max(tail))
    # a share of 0 leaves the budget to target_stall alone
    pace.set_limits(PaceLimits(target_stall=0.0005, stall_share=0, min_batch=5))
    assert pace.budget() == 0.0005


def test_new_limits_clamp_the_client_loops_rest() -> None:
    pace = PaceController(PaceLimits(max_pause=1.0, recheck=0), start=100)
    for _ in range(30):
        feed(pace, {"3": (1.0, 0.001)})
    pace.set_limits(PaceLimits(max_pause=0.002))
    assert pace.pause == 0.002


def test_client_settings_are_validated_and_reach_the_limits() -> None:
    s = Settings()
    assert s.proxy_poll_ms == 0.0  # the clients' latency loop is off unless asked for
    s.update({"proxy_poll_ms": 100, "stall_share": 0, "client_slack_ms": 0.3,
              "proxy_window_ms": 500})
    lim = s.pace_limits()
    assert (lim.stall_share, lim.client_slack) == (0, pytest.approx(0.0003))
    assert s.proxy_poll_ms == 100.0 and s.proxy_window_ms == 500.0
    s.update({"recheck_s": 0})
    assert s.pace_limits().recheck == 0 and s.pace_limits().hold == pytest.approx(0.7)
    for bad in ({"proxy_window_ms": 0}, {"stall_share": -1}, {"client_slack_ms": -0.1},
                {"recheck_s": -1}):
        with pytest.raises(ValueError):
            s.update(bad)
    with pytest.raises(ValueError):
        PaceLimits(stall_share=-0.5)


def test_someone_elses_load_raises_the_baseline_after_a_check() -> None:
    lim = PaceLimits(max_pause=0.004, recheck=1.0, hold=1.5)
    pace = PaceController(lim, start=100)
    feed(pace, {"1": (0.0004, 0.0004)})
    for _ in range(5):  # another process loads the host: 3x, for longer than `recheck`
        feed(pace, {"1": (0.0012, 0.0004)})
    assert pace.hold_until > CLOCK[0] and pace.checks == 1
    assert pace.rest(CLOCK[0]) == pytest.approx(pace.hold_until - CLOCK[0])
    hold_end = pace.hold_until
    feed(pace, {"1": (0.0012, 0.0004)})  # inside the hold: the window still saw moving
    assert pace.hold_until == hold_end
    CLOCK[0] = hold_end
    feed(pace, {"1": (0.0012, 0.0004)}, step=0.0)  # quiet window: still 3x, not the mover
    view = pace.view()["clients"]["1"]
    assert view["baseline_ms"] == pytest.approx(1.2) and view["raised"]
    assert pace.pause == 0 and not pace.high and pace.rest(CLOCK[0]) == 0
    for _ in range(8):  # the same 1.2 ms is now the norm: no rest
        feed(pace, {"1": (0.0012, 0.0004)})
    assert pace.pause == 0 and pace.checks == 1
    CLOCK[0] += 31  # the raised baseline expires: the quiet one applies again
    feed(pace, {"1": (0.0004, 0.0004)})
    assert pace.view()["clients"]["1"]["baseline_ms"] == pytest.approx(0.4)


def test_a_check_that_finds_the_mover_guilty_keeps_the_baseline() -> None:
    lim = PaceLimits(max_pause=0.004, recheck=1.0, hold=1.5)
    pace = PaceController(lim, start=100)
    for _ in range(6):
        feed(pace, {"1": (0.002, 0.0005), "2": (0.0005, 0.0005)})
    assert pace.checks == 1
    CLOCK[0] = pace.hold_until
    # resting, the clients are back at 0.5 ms: the migration was the cause
    feed(pace, {"1": (0.0005, 0.0005), "2": (None, 0.0005)}, step=0.0)
    assert pace.view()["clients"]["1"]["baseline_ms"] == pytest.approx(0.5)
    assert not pace.view()["clients"]["1"]["raised"]
    for _ in range(3):  # moving again makes them slow again: rests, then another check
        feed(pace, {"1": (0.002, 0.0005)})
    assert pace.pause > 0 and pace.high
    for _ in range(5):
        feed(pace, {"1": (0.002, 0.0005)})
    assert pace.checks == 2


def test_no_checks_when_recheck_is_zero() -> None:
    pace = PaceController(PaceLimits(recheck=0), start=100)
    for _ in range(100):
        feed(pace, {"1": (0.01, 0.0005)})
    assert pace.checks == 0 and pace.hold_until == 0 and pace.rest(CLOCK[0]) == pace.pause


def test_sub_millisecond_durations_are_valid_settings() -> None:
    s = Settings()
    assert s.update({"target_stall_ms": 0.25, "probe_interval_ms": 0.5}) == [
        "target_stall_ms", "probe_interval_ms"]
    assert s.target_stall_ms == 0.25 and s.pace_limits().target_stall == 0.00025
    for name in ("target_stall_ms", "stall_ms", "probe_interval_ms", "proxy_window_ms"):
        with pytest.raises(ValueError, match=f"'{name}' must be > 0"):
            s.update({name: 0})
    with pytest.raises(ValueError, match="'latency_factor' must be >= 1"):
        s.update({"latency_factor": 0.9})
    with pytest.raises(ValueError, match="'batch_size' must be >= 1"):
        s.update({"batch_size": 0})
    assert s.update({"max_pause_ms": 0}) == ["max_pause_ms"]
