"""Fixtures for the web page tests: one real cluster (dashboard + proxy + redis groups, 1024
slots) shared by the whole `tests/integration/ui` package, a background client load through
the proxy so the page has numbers to show, and headless Chromium driven by Playwright.

The browser is Debian's `chromium` (/usr/bin/chromium): Playwright's own browser download does
not work offline. Screenshots go to $SLOTPROXY_ARTIFACTS (default <repo>/.artifacts/ui/).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.harness import RedisServer
from tests.harness.cluster import Cluster

REPO = Path(__file__).resolve().parents[3]
CHROMIUM = os.environ.get("SLOTPROXY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def shots() -> Path:
    base = Path(os.environ.get("SLOTPROXY_ARTIFACTS", REPO / ".artifacts"))
    path = base / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Traffic:
    """A little client load through the proxy (SET/GET/INCR), so ops/s and keys are not zero."""

    def __init__(self, port: int, rate: float = 300.0) -> None:
        self.port = port
        self.rate = rate
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        conn = redis.Redis(port=self.port, socket_timeout=5)
        n = 0
        while not self.stop.is_set():
            try:
                pipe = conn.pipeline(transaction=False)
                for i in range(10):
                    pipe.set(f"user:{(n + i) % 3000}", "x" * 64)
                    pipe.incr(f"hits:{(n + i) % 97}")
                pipe.execute(raise_on_error=False)
            except redis.RedisError:
                conn = redis.Redis(port=self.port, socket_timeout=5)
            n += 10
            time.sleep(20 / self.rate)


@pytest.fixture(scope="package")
def cluster() -> Iterator[Cluster]:
    tmp = Path(tempfile.mkdtemp(prefix="slotproxy-ui-"))
    c = Cluster(tmp, ngroups=2, nproxies=1, health_interval=0.5)
    spare = RedisServer(tmp / "spare").start()  # becomes group 3 from the page
    c.spare = spare  # type: ignore[attr-defined]
    # added to group 1 as a replica from the page, then promoted
    c.spare_replica = RedisServer(tmp / "spare-replica").start()  # type: ignore[attr-defined]
    traffic = Traffic(c.proxies[0].port)
    traffic.thread.start()
    try:
        yield c
    finally:
        traffic.stop.set()
        traffic.thread.join(10)
        c.close()
        spare.stop()
        c.spare_replica.stop()  # type: ignore[attr-defined]
        shutil.rmtree(tmp, ignore_errors=True)


# Package scope: Playwright's sync API keeps its own event loop running in this thread while
# it lives, so it must be gone before any later test needs an event loop of its own.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    # No skipping: `./dev test` installs both, and a browser test that did not run is not a pass.
    import playwright.sync_api as sync_api

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: apt-get install chromium"
    profile = tempfile.mkdtemp(prefix="slotproxy-chromium-")
    with sync_api.sync_playwright() as pw:
        # A persistent context is how a fresh --user-data-dir is passed to Chromium.
        ctx = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
        try:
            yield ctx
        finally:
            ctx.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: Any, cluster: Cluster) -> Iterator[Any]:
    """A fresh tab on the dashboard page; `confirm()` dialogs are accepted like a person would."""
    p = browser.new_page()
    p.on("dialog", lambda d: d.accept())
    p.set_default_timeout(15_000)
    p.goto(cluster.dash.url + "/")
    yield p
    p.close()
