"""The dashboard's data model and its JSON form (sans-IO).

The whole topology -- groups, slot owners, per-slot migration state and the epoch -- is ONE
document (`Topology`), written to the store with compare-and-swap, so every change is atomic on
every store backend. Proxies are separate records (`ProxyRecord`) because they come and go on
their own (registration, removal) and must not make topology writes conflict.

Everything here is immutable: a change builds a new `Topology` (see `changes.py`), which makes
"compute, then commit, else keep the old one" trivially safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slotcore.keyslot import SLOT_COUNTS
from slotcore.ranges import ranges_of
from slotcore.slotmap import LOCKED, GroupSpec, SlotMap

from .states import TRANSIT_OF

MAX_GROUP_ID = 9999


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A backend group as the topology document stores it (the data path's view of it is
    `slotcore.slotmap.GroupSpec`)."""

    id: int
    master: str | None = None
    replicas: tuple[str, ...] = ()
    state: str = "active"
    weight: float = 1.0   # share of slots (or load) rebalance gives this group; 0 = drain it
    # CONFIG SET settings the dashboard applies to the group's master, and to every newly
    # promoted one (model.replication.KNOBS: min-replicas-to-write, min-replicas-max-lag).
    config: dict[str, str] = field(default_factory=dict)

    @property
    def servers(self) -> tuple[str, ...]:
        return ((self.master,) if self.master else ()) + self.replicas

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "master": self.master,
                               "replicas": list(self.replicas), "state": self.state,
                               "weight": self.weight}
        if self.config:
            out["config"] = dict(sorted(self.config.items()))
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupRecord:
        return cls(id=int(data["id"]), master=data.get("master") or None,
                   replicas=tuple(data.get("replicas", ())), state=data.get("state", "active"),
                   weight=float(data.get("weight", 1.0)),
                   config={str(k): str(v) for k, v in (data.get("config") or {}).items()})


@dataclass(frozen=True, slots=True)
class SlotMigration:
    """One slot moving from `source` to `target`; `state` is one of states.MIGRATION_STATES."""

    state: str
    source: int
    target: int

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "source": self.source, "target": self.target}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SlotMigration:
        return cls(state=data["state"], source=int(data["source"]), target=int(data["target"]))


@dataclass(frozen=True, slots=True)
class Topology:
    """Groups, slot owners (`owner[slot]` = gid, 0 = unassigned), migrations and the epoch."""

    nslots: int
    owner: tuple[int, ...]
    groups: dict[int, GroupRecord] = field(default_factory=dict)
    migrations: dict[int, SlotMigration] = field(default_factory=dict)
    epoch: int = 0
    # Big keys being copied in chunks (hex of the key bytes): every proxy holds requests to them.
    fenced: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.nslots not in SLOT_COUNTS:
            raise ValueError(f"slots must be one of {SLOT_COUNTS}, not {self.nslots}")
        if len(self.owner) != self.nslots:
            raise ValueError(f"topology has {len(self.owner)} slot owners, expected {self.nslots}")

    @classmethod
    def empty(cls, nslots: int) -> Topology:
        return cls(nslots=nslots, owner=(0,) * nslots)

    def slots_of(self, gid: int) -> list[int]:
        return [s for s, g in enumerate(self.owner) if g == gid]

    def ranges(self) -> list[tuple[int, int, int]]:
        """(start, end, gid) for every maximal run of assigned slots with one owner."""
        out: list[tuple[int, int, int]] = []
        for s, gid in enumerate(self.owner):
            if out and out[-1][2] == gid and out[-1][1] == s - 1:
                out[-1] = (out[-1][0], s, gid)
            elif gid:
                out.append((s, s, gid))
        return out

    def slot_map(self) -> SlotMap:
        """What proxies route by. Groups without a master own no slots and are left out."""
        specs = {g.id: GroupSpec(g.id, g.master, g.replicas)
                 for g in self.groups.values() if g.master}
        # A group switching masters (`group promote`) has its slots LOCKED in place (source =
        # target = the group): every proxy holds their requests until the map that names the
        # new master, the same hold a migrating slot gets while it is prepared.
        paused = {g.id for g in self.groups.values() if g.state == "promoting" and g.master}
        if not self.migrations and not self.fenced and not paused:
            return SlotMap(nslots=self.nslots, owner=self.owner, groups=specs, epoch=self.epoch)
        owner = list(self.owner)
        moving: dict[tuple[int, int, str], list[int]] = {}
        for s, gid in enumerate(self.owner):
            if gid in paused and s not in self.migrations:
                moving.setdefault((gid, gid, LOCKED), []).append(s)
        for s, m in sorted(self.migrations.items()):
            how = TRANSIT_OF[m.state]
            if how is None:
                continue
            owner[s] = m.target  # a slot in transit is listed under its target
            moving.setdefault((m.source, m.target, how), []).append(s)
        transit = tuple(sorted((a, b, src, dst, how) for (src, dst, how), slots in moving.items()
                               for a, b in ranges_of(slots)))
        return SlotMap(nslots=self.nslots, owner=tuple(owner), groups=specs, epoch=self.epoch,
                       transit=transit, fenced=frozenset(bytes.fromhex(k) for k in self.fenced))

    def to_json(self) -> dict[str, Any]:
        # Owners are stored as ranges: 16384 slots in three groups is three short triples.
        return {
            "epoch": self.epoch,
            "slots": self.nslots,
            "groups": [g.to_json() for g in sorted(self.groups.values(), key=lambda g: g.id)],
            "ranges": [list(r) for r in self.ranges()],
            "migrations": {str(s): m.to_json() for s, m in sorted(self.migrations.items())},
            **({"fenced": sorted(self.fenced)} if self.fenced else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Topology:
        nslots = int(data["slots"])
        owner = [0] * nslots
        for start, end, gid in data.get("ranges", []):
            for s in range(int(start), int(end) + 1):
                owner[s] = int(gid)
        groups = {g.id: g for g in map(GroupRecord.from_json, data.get("groups", []))}
        migrations = {int(s): SlotMigration.from_json(m)
                      for s, m in data.get("migrations", {}).items()}
        return cls(nslots=nslots, owner=tuple(owner), groups=groups, migrations=migrations,
                   epoch=int(data.get("epoch", 0)),
                   fenced=tuple(sorted(data.get("fenced", ()))))


@dataclass(frozen=True, slots=True)
class ProxyRecord:
    """A registered proxy. `epoch` is the last topology epoch it acknowledged."""

    id: str
    addr: str       # where clients connect
    admin: str      # its admin HTTP API, where the dashboard pushes slot maps
    state: str = "pending"
    last_seen: float = 0.0
    registered: float = 0.0
    epoch: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "addr": self.addr, "admin": self.admin, "state": self.state,
                "last_seen": self.last_seen, "registered": self.registered,
                "epoch": self.epoch, "error": self.error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProxyRecord:
        return cls(id=data["id"], addr=data["addr"], admin=data["admin"],
                   state=data.get("state", "pending"),
                   last_seen=float(data.get("last_seen", 0.0)),
                   registered=float(data.get("registered", 0.0)),
                   epoch=int(data.get("epoch", 0)), error=data.get("error"))
