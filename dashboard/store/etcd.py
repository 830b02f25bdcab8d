"""etcd v3 store, spoken over etcd's JSON gateway with aiohttp.

Why not a client library: python-etcd3 was last released in 2020 and pins old grpcio/protobuf,
and `aetcd` would add grpcio (a large native wheel) for the handful of calls we make. The gateway
(`/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/grant`, `/v3/lease/keepalive`, `/v3/lease/revoke`)
is part of every etcd server since 3.3, takes JSON with base64 keys and values, and aiohttp is
already a dependency. The cost is that watches and keepalives are not streamed: leadership is
polled and the lease is refreshed by one short request every ttl/3, which is plenty here.

Mapping of the contract:
* revision = the key's `mod_revision` (store-wide and monotonic, as the contract wants);
* CAS = a txn comparing `mod_revision` (or `create_revision == 0` for "must not exist");
* leader lock = a key put with a lease, only if it does not exist (`create_revision == 0`);
  while we hold it every write also compares the lock key's `create_revision` with ours, so a
  dashboard whose lease expired (paused, partitioned) cannot overwrite the new leader's writes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from typing import Any

import aiohttp

from .base import CasConflict, Entry, NotLeader, Store, StoreError, StoreUnavailable

log = logging.getLogger(__name__)


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def _unb64(data: str) -> bytes:
    return base64.b64decode(data)


def prefix_end(prefix: str) -> bytes:
    """The smallest key greater than every key starting with `prefix` (etcd's range_end)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"  # every key


class EtcdStore(Store):
    def __init__(self, endpoints: list[str] | str, lease_ttl: int = 10,
                 timeout: float = 3.0) -> None:
        super().__init__()
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError("etcd store needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.lease_ttl = max(2, int(lease_ttl))
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._current = 0  # index of the endpoint that answered last
        self._lease: str | None = None
        self._leader_key: str | None = None
        self._leader_rev: int | None = None  # create_revision of our lock key: the fence
        self._leading = False
        self._keepalive: asyncio.Task[None] | None = None

    # -- transport -----------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the gateway, failing over between endpoints on connection errors."""
        errors = []
        for i in range(len(self.endpoints)):
            idx = (self._current + i) % len(self.endpoints)
            url = self.endpoints[idx] + path
            try:
                async with self._http().post(url, json=body) as resp:
                    data = await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as e:
                errors.append(f"{url}: {e or type(e).__name__}")
                continue
            self._current = idx
            if resp.status != 200 or "error" in data:
                raise StoreError(f"etcd {path}: {data.get('error') or data.get('message')}")
            return data
        raise StoreUnavailable("etcd unreachable: " + "; ".join(errors))

    @staticmethod
    def _entry(kv: dict[str, Any]) -> Entry:
        return Entry(key=_unb64(kv["key"]).decode(), value=json.loads(_unb64(kv.get("value", ""))),
                     revision=int(kv["mod_revision"]))

    # -- kv ------------------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        data = await self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = data.get("kvs") or []
        return self._entry(kvs[0]) if kvs else None

    async def list(self, prefix: str) -> list[Entry]:
        data = await self._call("/v3/kv/range", {"key": _b64(prefix),
                                                 "range_end": _b64(prefix_end(prefix))})
        return sorted((self._entry(kv) for kv in data.get("kvs") or []), key=lambda e: e.key)

    def _compares(self, key: str, expect: int | None) -> list[dict[str, Any]]:
        compares = []
        if expect == 0:
            compares.append({"key": _b64(key), "target": "CREATE", "result": "EQUAL",
                             "create_revision": "0"})
        elif expect is not None:
            compares.append({"key": _b64(key), "target": "MOD", "result": "EQUAL",
                             "mod_revision": str(expect)})
        if self._leader_rev is not None:
            assert self._leader_key is not None
            compares.append({"key": _b64(self._leader_key), "target": "CREATE",
                             "result": "EQUAL", "create_revision": str(self._leader_rev)})
        return compares

    async def _txn(self, key: str, expect: int | None,
                   op: dict[str, Any]) -> dict[str, Any]:
        failure = [{"request_range": {"key": _b64(key)}}]
        if self._leader_key is not None:
            failure.append({"request_range": {"key": _b64(self._leader_key)}})
        data = await self._call("/v3/kv/txn", {"compare": self._compares(key, expect),
                                               "success": [op], "failure": failure})
        if data.get("succeeded"):
            return data
        # Find out which comparison failed, to raise the error that says what to do.
        ranges = [r.get("response_range", {}) for r in data.get("responses", [])]
        if self._leader_rev is not None:
            lock = (ranges[1].get("kvs") or [{}])[0] if len(ranges) > 1 else {}
            if int(lock.get("create_revision", 0)) != self._leader_rev:
                self._lost()
                raise NotLeader("this dashboard no longer holds the etcd leader lock")
        kvs = ranges[0].get("kvs") if ranges else None
        have = int(kvs[0]["mod_revision"]) if kvs else 0
        raise CasConflict(f"{key}: revision is {have}, expected {expect}")

    async def put(self, key: str, value: dict[str, Any], expect: int | None = None) -> int:
        op = {"request_put": {"key": _b64(key), "value": _b64(json.dumps(value))}}
        data = await self._txn(key, expect, op)
        return int(data["header"]["revision"])

    async def delete(self, key: str, expect: int | None = None) -> bool:
        op = {"request_delete_range": {"key": _b64(key)}}
        data = await self._txn(key, expect, op)
        resp = data.get("responses", [{}])[0].get("response_delete_range", {})
        return int(resp.get("deleted", 0)) > 0

    # -- leadership ----------------------------------------------------------------------------

    async def try_lead(self, leader_key: str, info: dict[str, Any]) -> bool:
        if self._leading:
            return True
        # A standby polls with one cheap read; a lease is granted only when the lock looks free.
        if await self.get(leader_key) is not None:
            return False
        grant = await self._call("/v3/lease/grant", {"TTL": str(self.lease_ttl)})
        lease = str(grant["ID"])
        key = _b64(leader_key)
        data = await self._call("/v3/kv/txn", {
            "compare": [{"key": key, "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": _b64(json.dumps(info)),
                                         "lease": lease}}],
        })
        if not data.get("succeeded"):
            with contextlib.suppress(StoreError):
                await self._call("/v3/lease/revoke", {"ID": lease})
            return False
        self._lease = lease
        self._leader_key = leader_key
        self._leader_rev = int(data["header"]["revision"])
        self._leading = True
        self.leader_lost.clear()
        self._keepalive = asyncio.create_task(self._keepalive_loop(self._lease))
        return True

    async def _keepalive_loop(self, lease: str) -> None:
        """Refresh the lease every ttl/3; declare the lock lost once it may have expired."""
        last_ok = time.monotonic()
        while self._leading:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                data = await self._call("/v3/lease/keepalive", {"ID": lease})
                if int(data.get("result", {}).get("TTL", 0)) <= 0:
                    log.error("etcd lease %s expired: leadership lost", lease)
                    break
                last_ok = time.monotonic()
            except StoreError as e:
                # Give up before the lease can have expired on the server: acting as leader
                # while a standby may already lead is what the fence exists to prevent.
                if time.monotonic() - last_ok > self.lease_ttl * 2 / 3:
                    log.error("cannot refresh etcd lease (%s): leadership lost", e)
                    break
        self._lost()

    def _lost(self) -> None:
        if self._leading:
            self._leading = False
            self._lease = None
            self.leader_lost.set()

    async def leader(self, leader_key: str) -> dict[str, Any] | None:
        entry = await self.get(leader_key)
        return entry.value if entry else None

    @property
    def is_leader(self) -> bool:
        return self._leading

    async def resign(self) -> None:
        task, self._keepalive = self._keepalive, None
        was_leading, self._leading = self._leading, False
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if was_leading and self._lease is not None:
            # Revoking the lease deletes the lock key: a standby takes over on its next poll.
            with contextlib.suppress(StoreError):
                await self._call("/v3/lease/revoke", {"ID": self._lease})
        self._lease = None

    async def close(self) -> None:
        await self.resign()
        if self._session is not None:
            await self._session.close()
            self._session = None
