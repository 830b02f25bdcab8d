"""Fixtures for the migration tests: real redis-servers (and, in test_e2e, real proxies and a
real dashboard process). Everything is started on free loopback ports and stopped by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import RedisServer


@pytest.fixture
def two_redis(tmp_path: Path) -> Iterator[list[RedisServer]]:
    servers = [RedisServer(tmp_path / f"redis{i}",
                           extra=["--lazyfree-lazy-server-del", "yes"]).start()
               for i in range(2)]
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()
