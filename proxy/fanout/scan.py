"""SCAN across groups: the opaque cursor and the slot-move log that keeps SCAN's guarantee
while slots migrate (pure: no I/O, no asyncio). The handler is `handlers.keyspace.scan`.

**Guarantee** (Redis's): every key present for the whole iteration is returned at least once;
a key may be returned more than once.

**Design.** A *pass* visits the groups one after the other in a fixed *order* (by gid,
optionally with one group moved to the front or the back), running a full backend SCAN
(0 … 0) on each group's master. Keys only move between groups through the slot map's transits
(src → dst), and every proxy applies each migration step before any key of it moves, so every
possible key move shows in the maps this proxy applies. A move is *dangerous* when its
destination's scan has begun and its source's scan has not ended, and it goes against the
order (dst before src) — or when a group appears in the map, or its master changes, after
its scan began. Any other move is harmless:

* Proof sketch. Let k be present throughout a pass with no dangerous move and suppose it is
  missed. k ends in some group G that was scanned, and was not in G for the whole of G's
  scan, so it arrived in G at a time t after G's scan began, from some Z. The move was not
  dangerous, so Z's scan had ended by t (a forward move: Z comes before G; a backward one:
  by the rule). k was in Z just before t and was not found there, so it arrived in Z after
  Z's scan began ... Each step goes to an earlier arrival of k, and k moved finitely often,
  so this ends at the group k was in when the pass began, which it cannot have "arrived in
  after its scan began": a contradiction.
* A dangerous move *restarts* the pass (first group of a new order, backend cursor 0). The
  keys already returned stay returned (duplicates are allowed); the iteration ends only with
  a pass during which no dangerous move was possible, which returns every key present
  throughout it, hence every key present throughout the iteration.
* The order of a new pass is chosen from the transits in force so that they are harmless:
  one source first (draining a group), one destination last (filling one), or by gid; so a
  migration does not restart passes that begin during it. A migration whose moves no such
  order makes harmless (several sources to several destinations crossing each other) can
  delay the end of an iteration until its moving batch is over; SCAN keeps answering.
* A group that disappears is skipped (its keys left through transits); a cursor whose epoch
  this process has no record of (another proxy process that started later) restarts. The
  epoch is kept modulo 256: a cursor left unused while 256 or more maps were applied may be
  read against too few of them (5 maps per migration batch: ~50 batches during one pause).

The check runs at the start of each SCAN call (the moves possible since the previous call, at
the cursor's position) and again when the backend's reply arrives (the moves possible during
the call): the maps applied over [epoch in the cursor, epoch now] are exactly the maps that
were in force in between, and each map logs the (src, dst) pairs of its transits and of its
owner changes.

**Cursor** (decimal, unsigned, < 2**63 so that clients parsing it as a signed 64-bit integer
are fine; 0 starts and ends): bits 0-31 backend cursor, 32-39 gid, 40-47 the order's pivot
group, 48 pivot last, 49-56 the low 8 bits of the slot-map epoch of the previous call, 57-62
check bits (never all 0) over the rest. A cursor whose check bits are wrong, whose gid is 0,
or that does not fit is answered `-ERR invalid cursor`, never scanned (a random number passes
the check 1 time in 63; it then scans an existing group from an arbitrary cursor). Group ids
above 255 and backends over 2**32 hash buckets (billions of keys) are refused with an error.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

BACKEND_BITS = 32
GID_BITS = 8
EPOCH_BITS = 8
CHECK_BITS = 6
MAX_BACKEND = (1 << BACKEND_BITS) - 1
MAX_GID = (1 << GID_BITS) - 1
_EPOCH_MASK = (1 << EPOCH_BITS) - 1
_GID_SHIFT = BACKEND_BITS
_PIVOT_SHIFT = _GID_SHIFT + GID_BITS
_LAST_SHIFT = _PIVOT_SHIFT + GID_BITS
_EPOCH_SHIFT = _LAST_SHIFT + 1
_CHECK_SHIFT = _EPOCH_SHIFT + EPOCH_BITS
_BODY_MASK = (1 << _CHECK_SHIFT) - 1
_SALT = b"slotproxy-scan-2"
assert _CHECK_SHIFT + CHECK_BITS == 63


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Order:
    """A pass's group order: ascending gid, with group `pivot` (0: none) moved to the front,
    or to the back when `last`."""

    pivot: int = 0
    last: bool = False

    def rank(self, gid: int) -> tuple[int, int]:
        if gid == self.pivot:
            return (2 if self.last else 0, gid)
        return (1, gid)

    def before(self, a: int, b: int) -> bool:
        return self.rank(a) < self.rank(b)

    def groups(self, gids: Iterable[int]) -> list[int]:
        return sorted(gids, key=self.rank)


ASCENDING = Order()


@dataclass(frozen=True, slots=True)
class Cursor:
    backend: int  # the group's own SCAN cursor
    gid: int  # the group being scanned
    order: Order  # the pass's group order
    epoch: int  # low EPOCH_BITS of the slot-map epoch at the previous call


def _check(body: int) -> int:
    return zlib.crc32(_SALT + body.to_bytes(8, "little")) % ((1 << CHECK_BITS) - 1) + 1


def encode_cursor(c: Cursor) -> int:
    if not 0 <= c.backend <= MAX_BACKEND:
        raise ValueError(f"backend cursor {c.backend} does not fit in {BACKEND_BITS} bits")
    if not 1 <= c.gid <= MAX_GID or not 0 <= c.order.pivot <= MAX_GID:
        raise ValueError(f"group id {c.gid} does not fit in a SCAN cursor (max {MAX_GID})")
    body = (c.backend | c.gid << _GID_SHIFT | c.order.pivot << _PIVOT_SHIFT
            | int(c.order.last) << _LAST_SHIFT | (c.epoch & _EPOCH_MASK) << _EPOCH_SHIFT)
    return body | _check(body) << _CHECK_SHIFT


def decode_cursor(raw: bytes) -> Cursor | None:
    """None for cursor 0 (a new iteration); InvalidCursor for anything not made by
    `encode_cursor` (not a decimal, too big, bad check bits)."""
    if not raw.isdigit() or len(raw) > 20:
        raise InvalidCursor(raw)
    n = int(raw)
    if n == 0:
        return None
    body = n & _BODY_MASK
    if n >> _CHECK_SHIFT != _check(body):
        raise InvalidCursor(raw)
    gid = body >> _GID_SHIFT & MAX_GID
    pivot = body >> _PIVOT_SHIFT & MAX_GID
    last = bool(body >> _LAST_SHIFT & 1)
    if gid == 0 or (last and not pivot):
        raise InvalidCursor(raw)
    return Cursor(body & MAX_BACKEND, gid, Order(pivot, last), body >> _EPOCH_SHIFT & _EPOCH_MASK)


# ---------------------------------------------------------------------- the move log
Pair = tuple[int, int]  # (from gid, to gid); (g, g) = group g is new or its master changed


class MoveLog:
    """Per applied slot-map epoch, the group pairs keys may move between while it is in force
    (its transits) or moved between at its swap (owner changes; new groups and master
    changes as (g, g))."""

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
                if self._masters.get(gid) != master:
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


def choose_order(current: frozenset[Pair], gids: Iterable[int]) -> Order:
    """The order in which the fewest transits in force are backward: a single source first
    (draining a group), a single destination last (filling one), else by gid."""
    moves = [(a, b) for a, b in current if a != b]
    if not moves:
        return ASCENDING
    candidates = [ASCENDING] + [Order(g, last) for g in sorted(gids) if g <= MAX_GID
                                for last in (False, True)]
    return min(candidates, key=lambda o: sum(1 for a, b in moves if o.before(b, a)))


def dangerous(pairs: frozenset[Pair], gid: int, started: bool, order: Order) -> bool:
    """Whether a move in `pairs` may have carried a key past the pass at position `gid`
    (`started`: its backend scan has begun): into a group whose scan has begun, from one
    whose scan has not ended, against the pass's order (or into a new/changed group)."""
    before = order.before
    for src, dst in pairs:
        if not (before(dst, gid) or (dst == gid and started)):
            continue  # the destination will be scanned after the move
        if src == dst:
            return True  # a group new to the map, or another master behind its gid
        if before(dst, src) and not before(src, gid):
            return True  # backward, from a group not yet fully scanned
    return False


def next_gid(gids: Iterable[int], gid: int, order: Order) -> int | None:
    """The first group after `gid` in the pass (gid itself need not exist any more)."""
    for g in order.groups(gids):
        if order.before(gid, g):
            return g
    return None
