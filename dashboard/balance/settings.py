"""The auto-balancer's settings (stored, changed at run time) and their validation (pure).

Every value has a default, a bound and one parser, shared by the API (which stores them) and
`proxyctl autobalance on` (which checks its flags before it calls the API), so a bad value
gets the same clear message on both sides:

    enabled             off by default
    dry_run             plan and report only, never start a migration
    interval            seconds between rounds; also the ops/s measuring window
    weights             {"memory": 1, "keys": 1, "ops": 1}: what "load" means
    tolerance           % a group may be above or below its weighted target before acting
    aim                 share of the tolerance a plan aims for (hysteresis: act at 10 %,
                        plan down to 5 %, so noise at the edge does not trigger a new move)
    quiet               seconds a group must stay out of tolerance before anything moves
    smoothing           half-life (seconds) of the ops/s moving average (0 = raw samples)
    max_slots_per_hour  budget over any sliding hour, across rounds and leaders
    cooldown            seconds a slot that moved stays where it is (and the reverse of a
                        group pair just used is not used)
    window              maintenance window, UTC: "02:00-05:00", "sat,sun 01:00-06:00",
                        "mon-fri 22:00-04:00" (an end before the start wraps midnight); None
    hot_share           % of a group's fair ops/s share one slot may carry before hot-slot
                        relief moves it (0 = off)
    hot_key_share       % of a hot slot's ops/s one key must carry to be reported as a hot key
    history             rounds kept in the store (the status shows them)
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

METRICS = ("memory", "keys", "ops")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class SettingsError(ValueError):
    pass


def parse_duration(value: Any, name: str) -> float:
    """Seconds from 30, 30.5, "30", "30s", "250ms", "5m", "1h30m", "1d"."""
    if isinstance(value, bool):
        raise SettingsError(f"{name}: expected a duration like 30s, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise SettingsError(f"{name}: expected a duration like 30s, 5m or 1h, got {value!r}")
    return total


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Window:
    """A daily maintenance window in UTC, optionally on some weekdays only."""

    start: int                      # minutes after midnight
    end: int                        # minutes after midnight; <= start wraps past midnight
    days: frozenset[int] = frozenset(range(7))  # 0 = Monday, as datetime.weekday()

    @classmethod
    def parse(cls, text: str) -> Window:
        words = str(text).strip().lower().split()
        if len(words) not in (1, 2):
            raise SettingsError(f"window: expected 'HH:MM-HH:MM' (UTC) with optional days "
                                f"first, e.g. 'sat,sun 02:00-05:00', got {text!r}")
        days = frozenset(range(7)) if len(words) == 1 else _parse_days(words[0])
        span = words[-1].split("-")
        if len(span) != 2:
            raise SettingsError(f"window: expected 'HH:MM-HH:MM', got {words[-1]!r}")
        start, end = (_minutes(x) for x in span)
        if start == end:
            raise SettingsError(f"window: start and end are both {span[0]}: give a span, or "
                                "no window (always allowed)")
        return cls(start, end, days)

    def contains(self, now: float) -> bool:
        """Whether unix time `now` is inside the window. A window wrapping midnight belongs to
        the day it starts on ("fri 22:00-04:00" covers Saturday 03:00)."""
        t = datetime.fromtimestamp(now, UTC)
        minute = t.hour * 60 + t.minute
        day = t.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= minute < self.end
        if minute >= self.start:
            return day in self.days
        return minute < self.end and (day - 1) % 7 in self.days

    def __str__(self) -> str:
        span = f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:" \
               f"{self.end % 60:02d}"
        if len(self.days) == 7:
            return span
        return ",".join(DAYS[d] for d in sorted(self.days)) + " " + span


def _minutes(text: str) -> int:
    m = _HHMM.match(text)
    if not m:
        raise SettingsError(f"window: {text!r} is not a time HH:MM (00:00 to 23:59)")
    return int(m.group(1)) * 60 + int(m.group(2))


def _parse_days(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        a, sep, b = part.partition("-")
        if a not in DAYS or (sep and b not in DAYS):
            raise SettingsError(f"window: unknown day(s) {part!r}: use {','.join(DAYS)}, "
                                "a range like mon-fri, or a list like sat,sun")
        i, j = DAYS.index(a), DAYS.index(b) if sep else DAYS.index(a)
        out.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
    return frozenset(out)


def _default_weights() -> dict[str, float]:
    return {"memory": 1.0, "keys": 1.0, "ops": 1.0}


@dataclass(frozen=True, slots=True)
class Settings:
    enabled: bool = False
    dry_run: bool = False
    interval: float = 10.0
    weights: dict[str, float] = field(default_factory=_default_weights)
    tolerance: float = 10.0
    aim: float = 0.5
    quiet: float = 60.0
    smoothing: float = 60.0
    max_slots_per_hour: int = 1024
    cooldown: float = 1800.0
    window: str | None = None
    hot_share: float = 50.0
    hot_key_share: float = 50.0
    history: int = 50

    # (low, high) bounds of the numeric settings, inclusive
    BOUNDS = {"interval": (0.1, 3600.0), "tolerance": (0.1, 1000.0), "aim": (0.05, 1.0),
              "quiet": (0.0, 7 * 86400.0), "smoothing": (0.0, 86400.0),
              "max_slots_per_hour": (1, 1_000_000), "cooldown": (0.0, 30 * 86400.0),
              "hot_share": (0.0, 1000.0), "hot_key_share": (1.0, 100.0), "history": (1, 1000)}
    DURATIONS = ("interval", "quiet", "smoothing", "cooldown")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def update(self, data: dict[str, Any]) -> Settings:
        """A copy with `data` applied, every value checked (SettingsError names the field)."""
        if not isinstance(data, dict):
            raise SettingsError("settings must be a JSON object")
        unknown = sorted(set(data) - set(self.names()))
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)} (known: "
                                f"{', '.join(self.names())})")
        kw: dict[str, Any] = {}
        for name, value in data.items():
            kw[name] = self._check(name, value)
        return replace(self, **kw)

    def _check(self, name: str, value: Any) -> Any:
        if name in ("enabled", "dry_run"):
            if not isinstance(value, bool):
                raise SettingsError(f"{name}: expected true or false, got {value!r}")
            return value
        if name == "weights":
            return _check_weights(value, self.weights)
        if name == "window":
            if value in (None, "", "none", "off"):
                return None
            return str(Window.parse(value))
        if name in self.DURATIONS:
            number = parse_duration(value, name)
        else:
            if isinstance(value, bool):
                raise SettingsError(f"{name}: expected a number, got {value!r}")
            try:
                number = float(str(value).strip().rstrip("%"))
            except ValueError:
                raise SettingsError(f"{name}: expected a number, got {value!r}") from None
        low, high = self.BOUNDS[name]
        if not low <= number <= high:
            raise SettingsError(f"{name}: {value!r} is out of range ({_show(name, low)} to "
                                f"{_show(name, high)})")
        if name in ("max_slots_per_hour", "history"):
            if number != int(number):
                raise SettingsError(f"{name}: expected a whole number, got {value!r}")
            return int(number)
        return number

    def window_obj(self) -> Window | None:
        return Window.parse(self.window) if self.window else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settings:
        """From the store: known fields only, each checked (a bad stored value is an error)."""
        return cls().update({k: v for k, v in (data or {}).items() if k in cls.names()})


def _show(name: str, value: float) -> str:
    return format_duration(value) if name in Settings.DURATIONS else f"{value:g}"


def _check_weights(value: Any, current: dict[str, float]) -> dict[str, float]:
    """{"ops": 2} changes one weight; "memory=1,keys=0,ops=2" (the CLI's form) too."""
    if isinstance(value, str):
        parsed: dict[str, Any] = {}
        for item in value.split(","):
            k, sep, v = item.partition("=")
            if not sep:
                raise SettingsError(f"weights: expected NAME=WEIGHT[,...] with names "
                                    f"{', '.join(METRICS)}, got {item!r}")
            parsed[k.strip()] = v.strip()
        value = parsed
    if not isinstance(value, dict):
        raise SettingsError("weights: expected {\"memory\": W, \"keys\": W, \"ops\": W}")
    out = dict(current)
    for k, v in value.items():
        if k not in METRICS:
            raise SettingsError(f"weights: unknown metric {k!r} (use {', '.join(METRICS)})")
        try:
            w = float(v)
        except (TypeError, ValueError):
            raise SettingsError(f"weights: {k}={v!r} is not a number") from None
        if isinstance(v, bool) or not 0 <= w <= 1000:
            raise SettingsError(f"weights: {k}={v!r} must be a number from 0 to 1000")
        out[k] = w
    if sum(out.values()) <= 0:
        raise SettingsError("weights: at least one of memory, keys, ops must be above 0")
    return out
