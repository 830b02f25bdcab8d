"""SCAN across groups: the opaque cursor and the slot-move log that keeps SCAN's guarantee
while slots migrate (pure: no I/O, no asyncio). The handler is `handlers.keyspace.scan`.

**Guarantee** (Redis's): every key present for the whole iteration is returned at least once;
a key may be returned more than once.

**Design.** A *pass* visits the groups one after the other in gid order (ascending or
descending: the pass's *direction*), running a full backend SCAN (0 … 0) on each group's
master. Keys only move between groups through the slot map's transit (src → dst), so every
possible key move appears in the maps this proxy applies (every proxy applies every step of a
migration before the mover may move a key). Call a move src → dst *forward* when dst comes
after src in the pass's direction, *backward* otherwise.

* Forward moves are harmless: by induction on a key's moves, a key present throughout either
  sat in some group for that group's whole backend scan (found there) or arrived in it after
  that scan started, from a group scanned earlier in the pass, ... down to the group it sat in
  when the pass began, which it left only after that group's scan had ended (found there).
* A backward move is harmless while its destination's scan has not started. Otherwise it may
  carry a key from a group not yet scanned into one already scanned: the pass is then
  *restarted* (first group, backend cursor 0, direction re-chosen so that the transits in force
  now are forward). The keys already returned stay returned (duplicates are allowed); the
  iteration ends only with a pass during which no dangerous move was possible, which returns
  every key present throughout it, so every key present throughout the iteration.
* A group whose master address changes mid-scan counts as a move into it (its backend cursor
  means nothing on another server); a group that disappears is skipped (its keys left through
  transits); a cursor whose epoch this process has no record of restarts the pass.

The check runs at the start of each SCAN call (the moves possible since the previous call, at
the cursor's position) and again when the backend's reply arrives (the moves possible during
the call): the maps applied over [epoch in the cursor, epoch now] are exactly the maps that
were in force in between, and each map logs the (src, dst) pairs of its transits and of its
owner changes. A restart costs duplicates, never a missed key. Passes started during a
one-way migration choose the direction in which it is forward, so they are not restarted by it.

**Cursor** (decimal, unsigned, < 2**63 so that clients parsing it as a signed 64-bit integer
are fine; 0 starts and ends): bits 0-35 backend cursor, 36-45 gid, 46 direction, 47-54 the low
8 bits of the slot-map epoch of the previous call, 55-62 a check byte (never 0) over the rest.
A cursor whose check byte is wrong, whose gid is 0, or that does not fit is answered
`-ERR invalid cursor`, never scanned.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

BACKEND_BITS = 36
GID_BITS = 10
EPOCH_BITS = 8
MAX_BACKEND = (1 << BACKEND_BITS) - 1
MAX_GID = (1 << GID_BITS) - 1
_EPOCH_MASK = (1 << EPOCH_BITS) - 1
_GID_SHIFT = BACKEND_BITS
_DIR_SHIFT = _GID_SHIFT + GID_BITS
_EPOCH_SHIFT = _DIR_SHIFT + 1
_CHECK_SHIFT = _EPOCH_SHIFT + EPOCH_BITS
_BODY_MASK = (1 << _CHECK_SHIFT) - 1
_SALT = b"slotproxy-scan-1"


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Cursor:
    backend: int  # the group's own SCAN cursor
    gid: int  # the group being scanned
    descending: bool  # the pass's direction
    epoch: int  # low EPOCH_BITS of the slot-map epoch at the previous call


def _check(body: int) -> int:
    return zlib.crc32(_SALT + body.to_bytes(8, "little")) % 255 + 1


def encode_cursor(c: Cursor) -> int:
    if not 0 <= c.backend <= MAX_BACKEND:
        raise ValueError(f"backend cursor {c.backend} does not fit in {BACKEND_BITS} bits")
    if not 1 <= c.gid <= MAX_GID:
        raise ValueError(f"group id {c.gid} does not fit in a SCAN cursor (max {MAX_GID})")
    body = (c.backend | c.gid << _GID_SHIFT | int(c.descending) << _DIR_SHIFT
            | (c.epoch & _EPOCH_MASK) << _EPOCH_SHIFT)
    return body | _check(body) << _CHECK_SHIFT


def decode_cursor(raw: bytes) -> Cursor | None:
    """None for cursor 0 (a new iteration); InvalidCursor for anything not made by
    `encode_cursor` (not a decimal, too big, bad check byte)."""
    if not raw.isdigit() or len(raw) > 20:
        raise InvalidCursor(raw)
    n = int(raw)
    if n == 0:
        return None
    body = n & _BODY_MASK
    if n >> _CHECK_SHIFT != _check(body):
        raise InvalidCursor(raw)
    gid = body >> _GID_SHIFT & MAX_GID
    if gid == 0:
        raise InvalidCursor(raw)
    return Cursor(body & MAX_BACKEND, gid, bool(body >> _DIR_SHIFT & 1),
                  body >> _EPOCH_SHIFT & _EPOCH_MASK)


# ---------------------------------------------------------------------- the move log
Pair = tuple[int, int]  # (from gid, to gid); (g, g) = group g's master changed


class MoveLog:
    """Per applied slot-map epoch, the group pairs keys may move between while it is in force
    (its transits) or moved between at its swap (owner changes, master changes)."""

    def __init__(self, keep: int = 1 << EPOCH_BITS) -> None:
        self.keep = keep
        self.entries: dict[int, frozenset[Pair]] = {}  # epoch → pairs, in applied order
        self._owner: tuple[int, ...] | None = None
        self._masters: dict[int, str] = {}
        self.current: frozenset[Pair] = frozenset()  # transits of the map in force

    def record(self, epoch: int, owner: tuple[int, ...], masters: dict[int, str],
               transit: tuple[tuple[int, int, int, int, str], ...]) -> None:
        pairs: set[Pair] = {(src, dst) for _, _, src, dst, _ in transit}
        self.current = frozenset(pairs)
        old = self._owner
        if old is not None:
            for a, b in zip(old, owner, strict=False):
                if a != b and a and b:
                    pairs.add((a, b))
        for gid, master in masters.items():
            prev = self._masters.get(gid)
            if prev is not None and prev != master:
                pairs.add((gid, gid))
        self._owner = owner
        self._masters = dict(masters)
        self.entries.pop(epoch, None)
        self.entries[epoch] = frozenset(pairs)
        while len(self.entries) > self.keep:
            del self.entries[next(iter(self.entries))]

    def since(self, epoch_low: int, now: int) -> frozenset[Pair] | None:
        """The pairs of every map applied from the one whose epoch's low bits are `epoch_low`
        (the most recent such, not after `now`) to the one in force; None if unknown."""
        out: set[Pair] = set()
        for e in sorted(self.entries, reverse=True):
            if e > now:
                continue
            out |= self.entries[e]
            if e & _EPOCH_MASK == epoch_low:
                return frozenset(out)
        return None


def choose_descending(current: frozenset[Pair]) -> bool:
    """The direction in which most transits in force are forward (ascending on a tie)."""
    up = sum(1 for a, b in current if a < b)
    down = sum(1 for a, b in current if a > b)
    return down > up


def order(gids: list[int], descending: bool) -> list[int]:
    return sorted(gids, reverse=descending)


def dangerous(pairs: frozenset[Pair], gid: int, started: bool, descending: bool) -> bool:
    """Whether a move in `pairs` may have carried a key past the pass at position `gid`
    (`started`: its backend scan has begun) — see the module docstring."""
    def before(a: int, b: int) -> bool:  # a comes before b in the pass
        return a > b if descending else a < b

    for src, dst in pairs:
        dst_started = before(dst, gid) or (dst == gid and started)
        if not dst_started:
            continue
        if src == dst or before(dst, src):  # a master change, or a backward move
            return True
    return False


def next_gid(gids: list[int], gid: int, descending: bool) -> int | None:
    """The first group after `gid` in the pass (gid itself need not exist any more)."""
    for g in order(gids, descending):
        if (g < gid) if descending else (g > gid):
            return g
    return None
