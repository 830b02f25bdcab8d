from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.harness import ProxyProcess, RedisServer, group_config

ARTIFACTS = Path(os.environ.get("SLOTPROXY_ARTIFACTS",
                              Path(__file__).resolve().parents[2] / ".artifacts"))


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    """Three real redis-server groups shared by a test module."""
    base = tmp_path_factory.mktemp("redis")
    servers = [RedisServer(base / f"g{i}").start() for i in range(3)]
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def proxy(backends: list[RedisServer], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[ProxyProcess]:
    """One slotproxy process over the module's three groups."""
    p = ProxyProcess(tmp_path_factory.mktemp("proxy"), group_config(backends)).start()
    yield p
    p.stop()


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def r(request: pytest.FixtureRequest, proxy: ProxyProcess, backends: list[RedisServer]
      ) -> Iterator[redis.Redis]:
    """A redis-py client on the proxy, speaking RESP2 and RESP3, with all groups flushed."""
    for s in backends:
        redis.Redis(port=s.port, protocol=2).flushall()
    c = proxy.client(protocol=request.param)
    yield c
    c.close()
