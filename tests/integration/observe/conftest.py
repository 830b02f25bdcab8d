"""One real cluster for the hot-key and big-key tests: a dashboard process, two redis groups
(1024 slots) and two proxies sampling hot keys in short windows."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ProxyProcess, until
from tests.harness.cluster import NSLOTS, Cluster

HOTKEYS = {"enabled": True, "sample_rate": 4, "capacity": 32, "window": 3}


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="slotproxy-observe-"))
    c = Cluster(tmp, ngroups=2, nproxies=0)
    try:
        c.proxies = [ProxyProcess.managed(tmp, f"proxy-{i}", c.dash.url, slots=NSLOTS,
                                          hotkeys=HOTKEYS).start() for i in range(2)]
        until(lambda: [p["state"] for p in c.dash.get("/api/v1/proxies")["proxies"]]
              == ["online"] * 2, 20, "proxies online")
        yield c
    finally:
        c.close()
        shutil.rmtree(tmp, ignore_errors=True)
