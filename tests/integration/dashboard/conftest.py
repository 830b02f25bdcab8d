"""Fixtures for the dashboard tests: real etcd and redis-server processes on free ports.

One etcd serves the whole session (it takes ~1 s to start); tests stay independent by using a
fresh cluster name, i.e. a fresh key prefix, each.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.config import StoreConfig
from dashboard.store.base import Store
from dashboard.store.etcd import EtcdStore
from dashboard.store.file import FileStore
from dashboard.store.keys import Keys
from tests.harness import Process, RedisServer, start_etcd
from tests.harness.inproc import DashboardServer


@pytest.fixture(scope="session")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_etcd(tmp_path_factory.mktemp("etcd"))
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture
def etcd_process(tmp_path: Path) -> Iterator[tuple[Process, str]]:
    """A private etcd for tests that stop it."""
    proc, url = start_etcd(tmp_path / "etcd")
    try:
        yield proc, url
    finally:
        proc.stop()


@pytest.fixture
def keys() -> Keys:
    return Keys(cluster=f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture(params=["file", "etcd"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def make_store(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest):
    """Factory for store instances sharing one backend (same dir / same etcd); all closed after."""
    made: list[Store] = []

    def make(lease_ttl: int = 2) -> Store:
        if store_kind == "file":
            store: Store = FileStore(tmp_path / "store")
        else:
            store = EtcdStore([request.getfixturevalue("etcd_url")], lease_ttl=lease_ttl)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
def store(make_store) -> Store:
    return make_store()


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[list[RedisServer]]:
    """Three real redis-servers (one per group)."""
    servers = [RedisServer(tmp_path / f"redis{i}").start() for i in range(3)]
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


@pytest.fixture
async def dash(tmp_path: Path):
    """The real dashboard app in this event loop, on a file store of its own."""
    server = await DashboardServer(store_cfg=StoreConfig(path=str(tmp_path / "store"))).start()
    try:
        yield server
    finally:
        await server.stop()
