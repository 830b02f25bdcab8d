"""Slot ranges as operators write them: "0-1023,2048,4000-4010"."""

from __future__ import annotations

from collections.abc import Iterable


def parse_ranges(text: str, nslots: int) -> list[int]:
    """Parse "0-1023,2048,4000-4010" into a sorted list of distinct slots.

    Raises ValueError with a message naming the bad part.
    """
    slots: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo_s, sep, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if sep else lo
        except ValueError:
            raise ValueError(f"bad slot range {part!r}") from None
        if lo > hi:
            raise ValueError(f"bad slot range {part!r}: start > end")
        if lo < 0 or hi >= nslots:
            raise ValueError(f"slot range {part!r} outside 0-{nslots - 1}")
        slots.update(range(lo, hi + 1))
    if not slots:
        raise ValueError("empty slot range")
    return sorted(slots)


def ranges_of(slots: Iterable[int]) -> list[tuple[int, int]]:
    """Compress sorted slots into inclusive (start, end) ranges."""
    out: list[tuple[int, int]] = []
    for s in slots:
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def format_ranges(slots: Iterable[int]) -> str:
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges_of(slots))
