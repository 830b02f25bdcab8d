"""The embedded default store: one directory on local disk.

Layout (all JSON, one file per key so a write touches one small file)::

    DIR/data/<url-quoted key>.json   {"revision": n, "value": {...}}
    DIR/revision                     the store-wide revision counter
    DIR/write.lock                   flock held for the few microseconds of each write (CAS)
    DIR/<quoted leader key>.lock     flock held by the leader dashboard for its whole life
    DIR/<quoted leader key>.owner    who that is (for `leader()` and error messages)

Every write goes to a temporary file that is fsynced and then renamed over the old one, so a
crash leaves either the old or the new document, never half of one. flock locks belong to the
open file and die with the process, so a crashed leader never leaves a stale lock behind (the
Codis filesystem store's `--remove-lock` chore). flock only works between processes on one
host, which is exactly the scope of the embedded store; use etcd for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from .base import CasConflict, Entry, NotLeader, Store


class FileStore(Store):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self.data = self.path / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self._owner_fd: int | None = None
        self._owner_key: str | None = None
        self._was_leader = False

    # -- files ---------------------------------------------------------------------------------

    def _file(self, key: str) -> Path:
        return self.data / (quote(key, safe="") + ".json")

    @staticmethod
    def _atomic_write(path: Path, payload: str) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # The rename itself is durable only once the directory is synced.
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @staticmethod
    def _read(path: Path, key: str) -> Entry | None:
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        return Entry(key=key, value=doc["value"], revision=int(doc["revision"]))

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        # A fresh open file per write: flock then excludes other threads and processes alike.
        fd = os.open(self.path / "write.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def _check_fence(self) -> None:
        if self._was_leader and self._owner_fd is None:
            raise NotLeader("this dashboard no longer holds the store lock")

    def _next_revision(self) -> int:
        counter = self.path / "revision"
        try:
            rev = int(counter.read_text()) + 1
        except FileNotFoundError:
            rev = 1
        self._atomic_write(counter, str(rev))
        return rev

    def _cas(self, key: str, expect: int | None) -> Entry | None:
        current = self._read(self._file(key), key)
        have = current.revision if current else 0
        if expect is not None and expect != have:
            raise CasConflict(f"{key}: revision is {have}, expected {expect}")
        return current

    def _put_sync(self, key: str, value: dict[str, Any], expect: int | None) -> int:
        self._check_fence()
        with self._write_lock():
            self._cas(key, expect)
            rev = self._next_revision()
            self._atomic_write(self._file(key), json.dumps({"revision": rev, "value": value}))
            return rev

    def _delete_sync(self, key: str, expect: int | None) -> bool:
        self._check_fence()
        with self._write_lock():
            if self._cas(key, expect) is None:
                return False
            self._file(key).unlink()
            self._next_revision()
            return True

    # -- Store ---------------------------------------------------------------------------------

    async def get(self, key: str) -> Entry | None:
        return self._read(self._file(key), key)

    async def list(self, prefix: str) -> list[Entry]:
        out = []
        for path in self.data.glob("*.json"):
            key = unquote(path.name[: -len(".json")])
            if key.startswith(prefix) and (entry := self._read(path, key)) is not None:
                out.append(entry)
        return sorted(out, key=lambda e: e.key)

    async def put(self, key: str, value: dict[str, Any], expect: int | None = None) -> int:
        return await asyncio.to_thread(self._put_sync, key, value, expect)

    async def delete(self, key: str, expect: int | None = None) -> bool:
        return await asyncio.to_thread(self._delete_sync, key, expect)

    # -- leadership ----------------------------------------------------------------------------

    def _lock_files(self, leader_key: str) -> tuple[Path, Path]:
        # One lock per leader key: clusters sharing a directory do not block each other.
        name = quote(leader_key, safe="")
        return self.path / f"{name}.lock", self.path / f"{name}.owner"

    async def try_lead(self, leader_key: str, info: dict[str, Any]) -> bool:
        if self._owner_fd is not None:
            return True
        lock, owner = self._lock_files(leader_key)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._owner_fd = fd
        self._owner_key = leader_key
        self._was_leader = True
        self.leader_lost.clear()
        await asyncio.to_thread(self._atomic_write, owner, json.dumps(info))
        return True

    async def leader(self, leader_key: str) -> dict[str, Any] | None:
        lock, owner = self._lock_files(leader_key)
        if self._owner_key != leader_key:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None  # nobody holds it: the .owner file (if any) is a dead leader's
            except BlockingIOError:
                pass
            finally:
                os.close(fd)
        try:
            return json.loads(owner.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @property
    def is_leader(self) -> bool:
        return self._owner_fd is not None

    async def resign(self) -> None:
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None
            self._owner_key = None

    async def close(self) -> None:
        await self.resign()
