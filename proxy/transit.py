"""Requests to slots that are moving between groups (docs/migration.md has the protocol).

A slot in transit is absent from `Router.route` (its entry is None), so the request hot path
pays nothing for migrations: only a request that finds None comes here.

* LOCKED slot, or a fenced key: the request is *held* — not sent anywhere — until the next slot
  map releases it (or `lock_timeout` answers `-TRYAGAIN`). Its reply slot is already in the
  client's FIFO, so reply order is kept.
* MIGRATING slot: the request's keys are first pulled from the source group with
  `MIGRATE target "" 0 timeout REPLACE KEYS k...` (atomic on the single-threaded source; `NOKEY`
  means they are already gone or never existed), then the request goes to the target. Every
  proxy does this before touching a key of the slot, and none writes the slot to the source any
  more, so every client sees the latest value and no acknowledged write is lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slotcore.resp import encode_error, pack_command

if TYPE_CHECKING:
    from .backend import BackendConn, Waiter
    from .router import Group


def tryagain(slot: int, why: str) -> bytes:
    # TRYAGAIN is what Redis Cluster answers mid-migration; cluster-aware clients retry it.
    return encode_error(f"TRYAGAIN slot {slot} is being migrated: {why}")


class TransitSlot:
    __slots__ = ("dst", "dst_host", "dst_port", "slot", "src", "state")

    def __init__(self, slot: int, state: str, src: Group, dst: Group) -> None:
        self.slot = slot
        self.state = state
        self.src = src
        self.dst = dst
        host, _, port = dst.master.rpartition(":")
        self.dst_host = host.encode()
        self.dst_port = port.encode()


class Held:
    """A request waiting for its slot (or key) to be released."""

    __slots__ = ("cidx", "keys", "packed", "session", "since", "slot", "waiter")

    def __init__(self, session: object, cidx: int, slot: int, keys: list[bytes], packed: bytes,
                 waiter: Waiter, since: float) -> None:
        self.session = session
        self.cidx = cidx
        self.slot = slot
        self.keys = keys
        self.packed = packed
        self.waiter = waiter
        self.since = since


class PullThenForward:
    """Waiter for the on-access MIGRATE: once the keys are on the target, send the request."""

    __slots__ = ("conn", "packed", "slot", "waiter")

    def __init__(self, conn: BackendConn, packed: bytes, waiter: Waiter, slot: int) -> None:
        self.conn = conn
        self.packed = packed
        self.waiter = waiter
        self.slot = slot

    def resolve(self, raw: bytes) -> None:
        if raw[:1] == b"+":  # +OK (moved) or +NOKEY (nothing to move)
            self.conn.send(self.packed, self.waiter)
        else:
            # IOERR/timeout: the key may be on the source, the target or both (never lost);
            # executing now could act on a stale copy, so the client retries instead.
            why = raw[1:].strip().decode(errors="replace")
            self.waiter.resolve(tryagain(self.slot, f"could not move its keys ({why})"))


def migrate_command(ts: TransitSlot, keys: list[bytes], timeout_ms: bytes) -> bytes:
    unique = list(dict.fromkeys(keys))
    return pack_command(b"MIGRATE", ts.dst_host, ts.dst_port, b"", b"0", timeout_ms,
                        b"REPLACE", b"KEYS", *unique)

