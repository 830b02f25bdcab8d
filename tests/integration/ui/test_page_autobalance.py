"""The auto-balance panel in headless Chromium (runs after test_page.py on the same cluster):
read-only it only shows the state; logged in, the switch turns it on in dry-run mode, the
rounds appear with their reasons, settings are saved (a bad one shows the API's error), and it
is switched off again. Dry run only: the shared cluster's slots never move here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.harness import until
from tests.harness.cluster import Cluster

from .test_page import login, owners


def test_autobalance_switch_dry_run_and_rounds(page: Any, cluster: Cluster, shots: Path) -> None:
    expect(page.locator("#ab-status")).to_have_text("off")
    expect(page.locator("#ab-toggle")).to_be_hidden()  # read-only: no switch
    login(page)
    expect(page.locator("#auth-state")).to_have_text("admin")
    before = owners(cluster)
    try:
        page.fill("#ab-form input[name=quiet]", "1s")
        page.check("#ab-dry")
        page.click("#ab-form button[type=submit]")
        expect(page.locator(".toast.ok", has_text="settings saved")).to_be_visible()
        page.click("#ab-toggle")
        expect(page.locator("#ab-status")).to_have_text("on · dry run")
        expect(page.locator("#ab-rounds tbody")).to_contain_text("waited", timeout=30_000)
        expect(page.locator("#ab-groups")).to_contain_text("group 1")
        page.locator("#autobalance-card").screenshot(path=str(shots / "08-autobalance.png"))
        page.fill("#ab-form input[name=tolerance]", "0")
        page.click("#ab-form button[type=submit]")
        expect(page.locator(".toast.error")).to_contain_text("tolerance: '0' is out of range")
        page.click("#ab-toggle")
        expect(page.locator("#ab-status")).to_have_text("off")
    finally:
        cluster.dash.call("PUT", "/api/v1/autobalance", {"enabled": False, "dry_run": False,
                                                         "quiet": 60})
    assert until(lambda: not cluster.migrations()["slots"], 10, "no migration")
    assert owners(cluster) == before
