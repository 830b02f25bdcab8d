"""The store contract every backend implements (the key layout is `store/keys.py`).

A store is a small key → JSON-document map with per-key revisions and compare-and-swap, plus a
leader lock. Two backends sit behind it (`store.file.FileStore`, `store.etcd.EtcdStore`) and
one contract test suite runs against both.

Revisions: positive integers that grow with every write to the store (so a key that is deleted
and created again never reuses an old revision, and a CAS can't be fooled by that). `expect=0`
means "the key must not exist".

Leadership: `campaign()` returns once this instance holds the lock; `leader_lost` is set if it
is lost later (etcd lease expired). While an instance is (or was) leader its writes are fenced:
once the lock is lost they fail with `NotLeader` instead of clobbering the new leader's writes.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


class StoreError(Exception):
    pass


class CasConflict(StoreError):
    """The key's revision was not the expected one: somebody else wrote first."""


class NotLeader(StoreError):
    """A fenced write after this instance lost (or never got) the leader lock."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    value: dict[str, Any]
    revision: int


class Store(ABC):
    def __init__(self) -> None:
        # Set when leadership is lost after campaign() won it.
        self.leader_lost = asyncio.Event()

    @abstractmethod
    async def get(self, key: str) -> Entry | None: ...

    @abstractmethod
    async def list(self, prefix: str) -> list[Entry]:
        """Every entry whose key starts with `prefix`, ordered by key."""

    @abstractmethod
    async def put(self, key: str, value: dict[str, Any], expect: int | None = None) -> int:
        """Write `value`; with `expect`, only if the key's revision is that (0 = absent).

        Returns the new revision. Raises CasConflict, NotLeader or StoreUnavailable.
        """

    @abstractmethod
    async def delete(self, key: str, expect: int | None = None) -> bool:
        """Remove `key` (CAS like put). False if it did not exist."""

    async def campaign(self, leader_key: str, info: dict[str, Any],
                       retry_interval: float = 0.5) -> None:
        """Block until this instance holds the leader lock at `leader_key`.

        Polling (not a watch) keeps both backends identical; a standby takes over at most
        `retry_interval` after the lock is free.
        """
        while True:
            try:
                if await self.try_lead(leader_key, info):
                    return
            except StoreError:
                pass  # the store is down or failing: a standby keeps trying, it does not exit
            await asyncio.sleep(retry_interval)

    @abstractmethod
    async def try_lead(self, leader_key: str, info: dict[str, Any]) -> bool:
        """One non-blocking attempt at the leader lock."""

    @abstractmethod
    async def leader(self, leader_key: str) -> dict[str, Any] | None:
        """Who holds the lock now (the `info` it campaigned with), if anybody."""

    @abstractmethod
    async def resign(self) -> None:
        """Give the lock up so a standby can take over at once."""

    @property
    @abstractmethod
    def is_leader(self) -> bool: ...

    @abstractmethod
    async def close(self) -> None: ...
