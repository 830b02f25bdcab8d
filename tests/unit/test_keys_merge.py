"""The dashboard's pure parts of hot and big keys: merging proxies' hot-key windows with their
error bounds, and the big-key tally (top per type, summaries, per-slot figures)."""

from __future__ import annotations

import pytest

from dashboard.errors import InvalidRequest
from dashboard.observe.bigkeys import BigKeySettings, Tally
from dashboard.observe.hotkeys import merge
from dashboard.observe.keyscan import KeyInfo


def window(start: float, keys: list[tuple[str, int, int, int]], floor: int = 0,
           requests: int = 1000) -> dict:
    return {"start": start, "end": start + 10, "samples": requests // 10,
            "requests": requests, "floor": floor,
            "keys": [{"key": k, "count": c, "error": e, "slot": s, "group": None}
                     for k, c, e, s in keys]}


def report(current: dict, previous: dict | None = None) -> dict:
    return {"enabled": True, "current": current, "previous": previous}


OWNER = [1] * 8 + [2] * 8


def test_merge_sums_counts_and_bounds() -> None:
    reports = {
        "p1": report(window(100, [("a", 500, 20, 3), ("b", 100, 40, 12)], floor=40)),
        "p2": report(window(100, [("a", 300, 0, 3), ("c", 90, 10, 9)], floor=0)),
    }
    out = merge(reports, OWNER)
    assert out["start"] == 100 and out["requests"] == 2000 and out["proxies"] == ["p1", "p2"]
    rows = {r["key"]: r for r in out["keys"]}
    assert [r["key"] for r in out["keys"]] == ["a", "b", "c"]
    a = rows["a"]
    assert (a["count"], a["lower"], a["upper"], a["group"]) == (800, 780, 800, 1)
    assert a["share"] == 0.4 and a["proxies"] == ["p1", "p2"]
    # b is not listed by p2, whose summary was not full (floor 0): nothing added.
    assert (rows["b"]["lower"], rows["b"]["upper"], rows["b"]["group"]) == (60, 100, 2)
    # c is not listed by p1, whose smallest count was 40: it may have had up to 40 there.
    assert (rows["c"]["lower"], rows["c"]["upper"]) == (80, 130)
    assert [r["key"] for r in merge(reports, OWNER, group=2)["keys"]] == ["b", "c"]
    assert [r["key"] for r in merge(reports, OWNER, limit=1)["keys"]] == ["a"]


def test_merge_aligns_windows_across_proxies() -> None:
    # p2 has not rotated yet: its current window is p1's previous one, and vice versa.
    reports = {
        "p1": report(window(110, [("new", 50, 0, 1)]), window(100, [("old", 70, 0, 1)])),
        "p2": report(window(100, [("old", 30, 0, 1)])),
        "p3": report(window(80, [("stale", 9, 0, 1)])),
    }
    cur = merge(reports, OWNER)
    assert cur["start"] == 110 and cur["proxies"] == ["p1"]
    assert cur["missing"] == ["p2", "p3"]
    prev = merge(reports, OWNER, window="previous")
    assert prev["start"] == 100 and prev["proxies"] == ["p1", "p2"]
    assert prev["keys"][0]["key"] == "old" and prev["keys"][0]["count"] == 100
    with pytest.raises(ValueError):
        merge(reports, OWNER, window="next")
    empty = merge({}, OWNER)
    assert empty["keys"] == [] and empty["start"] is None


def test_big_key_tally_keeps_top_per_type_and_summaries() -> None:
    t = Tally(nslots=16, top=2)
    t.add(1, [KeyInfo(b"s1", 1, 100, "string", 10), KeyInfo(b"s2", 1, 300, "string", 5),
              KeyInfo(b"s3", 2, 200, "string", 50), KeyInfo(b"l1", 9, 1000, "list", 400)])
    t.add(2, [KeyInfo(b"l1", 9, 1000, "list", 400),  # SCAN may return a key twice
              KeyInfo(b"m", 3, 64, "ReJSON-RL", None)])
    res = t.result()
    assert [r["key"] for r in res["top"]["string"]] == ["s2", "s3"]
    assert [r["bytes"] for r in res["rows"]][:1] == [1000]
    s = res["summary"]["string"]
    assert (s["keys"], s["bytes"], s["elements"]) == (3, 600, 65)
    assert s["biggest"]["key"] == "s2" and s["most_elements"]["key"] == "s3"
    assert res["summary"]["ReJSON-RL"]["most_elements"]["elements"] is None
    assert t.slot_keys[1] == 2 and t.slot_bytes[1] == 400 and sum(t.slot_keys) == 6


def test_big_key_settings_validation() -> None:
    assert BigKeySettings.from_json({}) == BigKeySettings()
    assert BigKeySettings.from_json({"count": 500, "pause_ms": 0}).count == 500
    for bad in ({"count": 0}, {"count": 10_001}, {"pause_ms": -1}, {"top": True},
                {"samples": 101}, {"nope": 1}):
        with pytest.raises(InvalidRequest):
            BigKeySettings.from_json(bad)
