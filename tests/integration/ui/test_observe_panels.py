"""The web page's latency and slow-log panels, in headless Chromium, over the package's real
cluster (its background traffic goes through proxy-0)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import redis
from playwright.sync_api import expect

from tests.harness import TOKEN
from tests.harness.cluster import Cluster


def test_latency_and_slowlog_panels(page: Any, cluster: Cluster, shots: Path) -> None:
    # Percentiles per group and per proxy, from the proxies' histograms (polled by the page).
    lat = page.locator("#lat-proxies tbody")
    expect(lat).to_contain_text("proxy-0", timeout=20_000)
    expect(page.locator("#lat-groups tbody")).to_contain_text("group 1")
    cells = lat.locator("tr").first.locator("td")
    expect(cells.nth(4)).to_have_text(re.compile(r"^[\d,.]+k?$"))  # p99 µs
    # The slow log needs the token; with the proxy logging everything it fills.
    expect(page.locator("#slowlog-note")).to_contain_text("Log in")
    r = redis.Redis(port=cluster.proxies[0].port, socket_timeout=10)
    r.config_set("proxy-slowlog-log-slower-than", 0)
    try:
        page.click("#login-btn")
        page.fill("#login-token", TOKEN)
        page.click("#login-submit")
        expect(page.locator("#auth-state")).to_have_text("admin")
        page.click("#slowlog-refresh")
        rows = page.locator("#slowlog-table tbody tr")
        expect(rows.first).to_contain_text("proxy proxy-0")
        # Newest first: the background traffic's SET/INCRBY through the proxy.
        expect(rows.first.locator("code")).to_have_text(re.compile(r"^(SET|INCRBY|GET) "))
        page.locator("#slowlog-card").scroll_into_view_if_needed()
        page.screenshot(path=str(shots / "00-latency-slowlog.png"), full_page=True)
    finally:
        r.config_set("proxy-slowlog-log-slower-than", 10000)
