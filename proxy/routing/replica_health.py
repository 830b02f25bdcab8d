"""The replica health loop: `INFO replication` of every group's replicas and master, every
`replica_check_interval`, judged by `routing.replicas.assess`.

The proxy checks for itself, so reads from replicas work with or without a dashboard. Each
server checked has one connection of its own here (AUTH/SELECT as configured for the
backends), never a lane: a replica that stops answering (DEBUG SLEEP, a stopped process)
delays only its own check, and is skipped as "unreachable" at the next one. At most one check
is in flight per server, so a silent server cannot pile requests up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from slotcore.addr import split_addr
from slotcore.resp import pack_command, parse_reply

from ..backend.conn import BackendConn, Flusher, new_backend_conn
from ..config import BackendConfig, ReadConfig
from .replicas import ReplicaReads, Verdict, assess, info_fields

log = logging.getLogger("slotproxy.replicas")

_INFO = pack_command(b"INFO", b"replication")


class ReplicaHealth:
    def __init__(self, reads: ReplicaReads, backend: BackendConfig, flusher: Flusher) -> None:
        self.reads = reads
        self.cfg: ReadConfig = reads.cfg
        self.backend = backend
        self.flusher = flusher
        self.conns: dict[str, BackendConn] = {}

    def _conn(self, addr: str) -> BackendConn:
        conn = self.conns.get(addr)
        if conn is None:
            host, port = split_addr(addr)
            b = self.backend
            conn = self.conns[addr] = new_backend_conn(
                host, port, self.flusher, password=b.password, username=b.username,
                connect_timeout=min(b.connect_timeout, self.cfg.check_timeout),
                request_timeout=0.0, reconnect_min=b.reconnect_min,
                reconnect_max=max(b.reconnect_min, self.cfg.check_interval))
            conn.start()
        return conn

    async def info(self, addr: str) -> dict[str, str] | None:
        """`INFO replication` of `addr` as fields, or None (down, error, no reply in time)."""
        conn = self._conn(addr)
        if not conn.up or conn.fifo:
            # Down, or the last check is still unanswered: no second one behind it.
            return None
        try:
            raw = await conn.probe(_INFO, self.cfg.check_timeout)
        except TimeoutError:
            return None
        if raw[:1] != b"$" and raw[:1] != b"=":
            return None
        value = parse_reply(raw)
        if not isinstance(value, bytes):
            return None
        return info_fields(value.decode(errors="replace"))

    async def check_group(self, master: str, replicas: tuple[str, ...], now: float) -> None:
        # The replicas first, then the master: the lag measured can only be over-estimated.
        rinfos = await asyncio.gather(*(self.info(r) for r in replicas))
        minfo = await self.info(master)
        for addr, rinfo in zip(replicas, rinfos, strict=True):
            if addr == master:
                verdict = Verdict(False, "is the group's master")
            else:
                verdict = assess(rinfo, minfo, addr, master, self.cfg)
            before = self.reads.status_of(addr)
            if before.good != verdict.good or (before.checked_at == 0.0 and not verdict.good):
                log.info("replica %s of %s: %s", addr, master, "in sync, serving reads"
                         if verdict.good else f"skipped ({verdict.reason})")
            self.reads.update(addr, verdict, now)

    async def check(self, groups: list[tuple[str, tuple[str, ...]]], now: float) -> None:
        """One round over (master, replicas) of every group that has replicas."""
        await asyncio.gather(*(self.check_group(m, r, now) for m, r in groups if r))
        live = {a for m, r in groups if r for a in (m, *r)}
        for addr in [a for a in self.conns if a not in live]:
            conn = self.conns.pop(addr)
            await conn.close()
        self.reads.rounds += 1

    async def run(self, groups: Callable[[], list[tuple[str, tuple[str, ...]]]],
                  clock: Callable[[], float]) -> None:
        """Check every interval until cancelled. `groups()` gives the current (master,
        replicas) pairs; `clock()` the loop time."""
        while True:
            try:
                await self.check(groups(), clock())
            except Exception:  # one bad round must not end the checks for good
                log.exception("replica health check failed")
            await asyncio.sleep(self.cfg.check_interval)

    async def close(self) -> None:
        conns = list(self.conns.values())
        self.conns.clear()
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()
