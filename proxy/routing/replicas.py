"""Reads from replicas: which replicas are fit to serve reads, and which one serves a read.

Sans-IO: the health loop (`routing.replica_health`) feeds `ReplicaReads.update` with what
`INFO replication` says on each group's master and replicas; the data path asks
`ReplicaReads.pick` for a replica lane. Nothing here runs for a client whose read policy is
"master" (the default): the connection's fast path and `dispatch.keyed` send to the master
exactly as without replicas.

A replica is *good* when, at its last check, it answered in time, says `role:slave`,
replicates from the group's master in the map in force, has `master_link_status:up`, is not in
`master_sync_in_progress`, and is within the lag bounds: bytes behind the master's
`master_repl_offset` (`replica_max_lag_bytes`) and seconds since its last ack to the master
(the master's `slaveN:...,lag=`; `replica_max_lag_seconds`). Anything else (not checked yet,
unreachable, a master, syncing, lagging) skips it until a check says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slotcore.addr import split_addr
from slotcore.resp import encode_error

from ..config import ReadConfig

if TYPE_CHECKING:
    from ..backend.conn import BackendConn
    from ..backend.pool import BackendPool

# A client's read policy (ClientState.read_from): falsy = master, so the hot path tests one int.
MASTER, PREFER_REPLICA, REPLICA = 0, 1, 2
POLICY_CODES = {"master": MASTER, "prefer-replica": PREFER_REPLICA, "replica": REPLICA}
POLICY_NAMES = {v: k for k, v in POLICY_CODES.items()}

_LOOPBACK_NAMES = {"localhost": "127.0.0.1", "::1": "127.0.0.1"}


def no_replica_error(gid: int) -> bytes:
    # What a Redis replica itself answers when it cannot serve (replica-serve-stale-data no);
    # the client asked never to read from the master.
    return encode_error(f"MASTERDOWN no replica of group {gid} is in sync "
                        "(read_from: replica never reads from the master)")


def info_fields(text: str) -> dict[str, str]:
    """`INFO replication`'s `key:value` lines as a flat mapping."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, sep, v = line.partition(":")
            if sep:
                out[k.strip()] = v.strip()
    return out


def _same_addr(host: str, port: str | int, addr: str) -> bool:
    try:
        h, p = split_addr(addr)
    except ValueError:
        return False
    norm = _LOOPBACK_NAMES.get
    return int(port) == p and norm(host, host) == norm(h, h)


def master_view(master: dict[str, str], replica_addr: str) -> tuple[int | None, int | None]:
    """(the replica's acked offset, seconds since its last ack) as the master lists it in its
    `slaveN:ip=...,port=...,state=online,offset=...,lag=...` lines; Nones if not listed."""
    for k, v in master.items():
        if not k.startswith("slave") or "=" not in v:
            continue
        kv = dict(p.partition("=")[::2] for p in v.split(","))
        if _same_addr(kv.get("ip", ""), kv.get("port", "0") or "0", replica_addr):
            if kv.get("state") != "online":
                return None, None
            try:
                return int(kv.get("offset", "")), int(kv.get("lag", ""))
            except ValueError:
                return None, None
    return None, None


@dataclass(frozen=True, slots=True)
class Verdict:
    good: bool
    reason: str  # "ok", or why the replica is skipped
    lag_bytes: int | None = None
    lag_seconds: float | None = None


def assess(replica: dict[str, str] | None, master: dict[str, str] | None, replica_addr: str,
           master_addr: str, cfg: ReadConfig) -> Verdict:
    """Whether a replica may serve reads, from its own and its master's INFO replication
    (None: that server did not answer)."""
    if replica is None:
        return Verdict(False, "unreachable")
    if replica.get("role") != "slave":
        return Verdict(False, f"role is {replica.get('role', 'unknown')}, not a replica")
    host, port = replica.get("master_host", ""), replica.get("master_port", "0") or "0"
    if not _same_addr(host, port, master_addr):
        return Verdict(False, f"replicates from {host}:{port}, not the master {master_addr}")
    if replica.get("master_link_status") != "up":
        return Verdict(False, "master link down")
    if replica.get("master_sync_in_progress", "0") != "0":
        return Verdict(False, "sync in progress")
    try:
        offset = int(replica.get("slave_repl_offset", ""))
    except ValueError:
        return Verdict(False, "no replication offset")
    if master is None:
        # The master did not answer: the replica's link says up (the master may have just
        # gone); its lag cannot be measured, so it is skipped rather than trusted.
        return Verdict(False, "master unreachable: lag unknown")
    try:
        master_offset = int(master.get("master_repl_offset", ""))
    except ValueError:
        return Verdict(False, "master has no replication offset")
    # The replica's INFO is read before the master's, so this over-estimates (never hides) lag.
    lag_bytes = max(0, master_offset - offset)
    _, ack_lag = master_view(master, replica_addr)
    lag_seconds: float | None = float(ack_lag) if ack_lag is not None else None
    if lag_seconds is None:
        # Not (yet) listed online by the master: fall back to the replica's own view.
        try:
            lag_seconds = float(replica.get("master_last_io_seconds_ago", ""))
        except ValueError:
            return Verdict(False, "lag unknown", lag_bytes)
    if cfg.max_lag_bytes and lag_bytes > cfg.max_lag_bytes:
        return Verdict(False, f"lagging {lag_bytes} bytes", lag_bytes, lag_seconds)
    if cfg.max_lag_seconds and lag_seconds > cfg.max_lag_seconds:
        return Verdict(False, f"lagging {lag_seconds:g} s", lag_bytes, lag_seconds)
    return Verdict(True, "ok", lag_bytes, lag_seconds)


def choose(pending: Sequence[int], start: int, least_pending: bool) -> int:
    """The index of the replica to use among `pending` (replies owed on each candidate's lane):
    the first from `start` (round robin) or, with `least_pending`, the one owing fewest, ties
    broken from `start` so equally loaded replicas take turns."""
    n = len(pending)
    first = start % n
    if not least_pending:
        return first
    best, best_n = first, pending[first]
    for k in range(1, n):
        i = (first + k) % n
        if pending[i] < best_n:
            best, best_n = i, pending[i]
    return best


@dataclass(slots=True)
class ReplicaStatus:
    """The last check of one replica address (shared by every map that lists it)."""

    addr: str
    good: bool = False
    reason: str = "not checked yet"
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    checked_at: float = 0.0  # loop time of the last check (0: never)


@dataclass(slots=True)
class GroupReads:
    """Counters of one group's reads under a replica policy (INFO, /api/stats)."""

    replica: int = 0  # served by a replica
    fallback: int = 0  # prefer-replica with no good replica: served by the master
    refused: int = 0  # read_from replica with no good replica: answered MASTERDOWN


class ReplicaReads:
    """Replica health by address and the choice of a replica for one read."""

    def __init__(self, cfg: ReadConfig, pool: BackendPool | None = None) -> None:
        self.cfg = cfg
        self.pool = pool
        self.default_policy = POLICY_CODES[cfg.read_from]
        self.least_pending = cfg.balance == "least-pending"
        self.status: dict[str, ReplicaStatus] = {}
        self.reads: dict[int, GroupReads] = {}
        self.rounds = 0  # health check rounds completed (INFO's replica_checks)
        self._turn = 0

    def status_of(self, addr: str) -> ReplicaStatus:
        st = self.status.get(addr)
        if st is None:
            st = self.status[addr] = ReplicaStatus(addr)
        return st

    def counters(self, gid: int) -> GroupReads:
        c = self.reads.get(gid)
        if c is None:
            c = self.reads[gid] = GroupReads()
        return c

    def update(self, addr: str, verdict: Verdict, now: float) -> None:
        st = self.status_of(addr)
        st.good, st.reason = verdict.good, verdict.reason
        st.lag_bytes, st.lag_seconds = verdict.lag_bytes, verdict.lag_seconds
        st.checked_at = now

    def forget_except(self, live: set[str]) -> None:
        """Drop the status of replicas no map lists any more."""
        for addr in [a for a in self.status if a not in live]:
            del self.status[addr]

    def pick(self, replicas: Sequence[str], lane: int) -> BackendConn | None:
        """The lane `lane` of a good replica among `replicas` (a group's, in map order), or
        None when none is good. Opens the replica's lanes on first use."""
        status = self.status
        good = [a for a in replicas if (st := status.get(a)) is not None and st.good]
        if not good:
            return None
        assert self.pool is not None
        lanes = self.pool.lanes
        self._turn += 1
        if len(good) == 1:
            return lanes(good[0])[lane]
        conns = [lanes(a)[lane] for a in good]
        return conns[choose([len(c.fifo) for c in conns], self._turn, self.least_pending)]
