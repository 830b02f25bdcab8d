"""The slot map: which group owns each slot, which slots are in transit, which keys are fenced.

Immutable, so a proxy swaps whole maps and a request sees the old one or the new one, never a
mix. Its JSON form is what the dashboard stores and pushes (`to_json` / `from_json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .keyslot import SLOT_COUNTS
from .members import ProxyAddr

# Per-slot migration states as pushed to proxies (see docs/migration.md):
LOCKED = "locked"        # requests touching the slot are held until the next map
MIGRATING = "migrating"  # keys are pulled from the source (MIGRATE) before each request
TRANSIT_STATES = (LOCKED, MIGRATING)


class StaleSlotMap(ValueError):
    """A slot map older than the one in force, or for another slot count: refused."""


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A backend group as the data path sees it: where its master is."""

    gid: int
    master: str  # "host:port"
    replicas: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SlotMap:
    """Immutable slot → group assignment plus the groups it names.

    `owner[slot]` is a group id, or 0 when the slot is unassigned. A proxy swaps whole SlotMaps,
    so readers never see a half-applied change. `epoch` orders maps: a proxy never goes back.
    """

    nslots: int
    owner: tuple[int, ...]
    groups: dict[int, GroupSpec] = field(default_factory=dict)
    epoch: int = 0
    # Slots being moved: (start, end, from_gid, to_gid, state), state LOCKED or MIGRATING.
    # `owner` lists such a slot under its target group.
    transit: tuple[tuple[int, int, int, int, str], ...] = ()
    # Keys (big keys being copied in chunks) that no request may touch until released.
    fenced: frozenset[bytes] = frozenset()
    # The live proxies (id, client address) as the dashboard knows them, for CLUSTER SLOTS and
    # friends (see `slotcore.members`); () when unknown. Not part of routing: two maps that
    # differ only here compare equal.
    proxies: tuple[ProxyAddr, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.nslots not in SLOT_COUNTS:
            raise ValueError(f"slots must be one of {SLOT_COUNTS}, not {self.nslots}")
        if len(self.owner) != self.nslots:
            raise ValueError(f"slot map has {len(self.owner)} entries, expected {self.nslots}")
        for gid in set(self.owner):
            if gid and gid not in self.groups:
                raise ValueError(f"slot map names unknown group {gid}")
        seen: set[int] = set()
        for start, end, src, dst, state in self.transit:
            if state not in TRANSIT_STATES:
                raise ValueError(f"transit {start}-{end}: unknown state {state!r}")
            if not (0 <= start <= end < self.nslots):
                raise ValueError(f"transit range {start}-{end} outside 0-{self.nslots - 1}")
            if src not in self.groups or dst not in self.groups:
                raise ValueError(f"transit {start}-{end} names unknown group {src} or {dst}")
            # src == dst only for LOCKED: a group's slots held in place while it switches
            # masters (nothing moves, so MIGRATING from a group to itself means nothing).
            if src == dst and state != LOCKED:
                raise ValueError(f"transit {start}-{end}: source and target are both {src}")
            for s in range(start, end + 1):
                if self.owner[s] != dst:
                    raise ValueError(f"transit slot {s} must be owned by its target {dst}")
                if s in seen:
                    raise ValueError(f"slot {s} is in transit twice")
                seen.add(s)

    @classmethod
    def from_ranges(
        cls,
        nslots: int,
        groups: dict[int, GroupSpec],
        assignments: list[tuple[int, int, int]],
        epoch: int = 0,
    ) -> SlotMap:
        """Build from (start, end, gid) inclusive ranges; overlapping ranges are an error."""
        owner = [0] * nslots
        for start, end, gid in assignments:
            if not (0 <= start <= end < nslots):
                raise ValueError(f"slot range {start}-{end} outside 0-{nslots - 1}")
            if gid not in groups:
                raise ValueError(f"slot range {start}-{end} names unknown group {gid}")
            for s in range(start, end + 1):
                if owner[s]:
                    raise ValueError(f"slot {s} assigned twice")
                owner[s] = gid
        return cls(nslots=nslots, owner=tuple(owner), groups=dict(groups), epoch=epoch)

    @classmethod
    def even(cls, nslots: int, groups: dict[int, GroupSpec], epoch: int = 0) -> SlotMap:
        """Spread all slots evenly over the groups, in gid order, as contiguous ranges."""
        gids = sorted(groups)
        if not gids:
            return cls(nslots=nslots, owner=(0,) * nslots, groups={}, epoch=epoch)
        owner: list[int] = []
        for i, gid in enumerate(gids):
            lo = nslots * i // len(gids)
            hi = nslots * (i + 1) // len(gids)
            owner.extend([gid] * (hi - lo))
        return cls(nslots=nslots, owner=tuple(owner), groups=dict(groups), epoch=epoch)

    def ranges(self) -> list[tuple[int, int, int]]:
        """(start, end, gid) for every maximal run of equally-owned slots (gid 0 = unassigned)."""
        out: list[tuple[int, int, int]] = []
        for s, gid in enumerate(self.owner):
            if out and out[-1][2] == gid:
                out[-1] = (out[-1][0], s, gid)
            else:
                out.append((s, s, gid))
        return out

    def slots_of(self, gid: int) -> list[int]:
        return [s for s, g in enumerate(self.owner) if g == gid]

    def to_json(self) -> dict:
        out: dict = {
            "epoch": self.epoch,
            "slots": self.nslots,
            "groups": {
                str(g.gid): {"master": g.master, "replicas": list(g.replicas)}
                for g in self.groups.values()
            },
            "ranges": [[a, b, gid] for a, b, gid in self.ranges() if gid],
        }
        if self.transit:
            out["transit"] = [list(t) for t in self.transit]
        if self.fenced:
            out["fenced"] = sorted(k.hex() for k in self.fenced)
        if self.proxies:
            out["proxies"] = [p.to_json() for p in self.proxies]
        return out

    @classmethod
    def from_json(cls, data: dict) -> SlotMap:
        groups = {
            int(gid): GroupSpec(int(gid), g["master"], tuple(g.get("replicas", ())))
            for gid, g in data.get("groups", {}).items()
        }
        base = cls.from_ranges(
            int(data["slots"]),
            groups,
            [(int(a), int(b), int(gid)) for a, b, gid in data.get("ranges", [])],
            epoch=int(data.get("epoch", 0)),
        )
        transit = tuple(
            (int(a), int(b), int(src), int(dst), str(state))
            for a, b, src, dst, state in data.get("transit", ())
        )
        fenced = frozenset(bytes.fromhex(k) for k in data.get("fenced", ()))
        proxies = tuple(ProxyAddr.from_json(p) for p in data.get("proxies") or ())
        if not transit and not fenced and not proxies:
            return base
        return cls(nslots=base.nslots, owner=base.owner, groups=base.groups, epoch=base.epoch,
                   transit=transit, fenced=fenced, proxies=proxies)
