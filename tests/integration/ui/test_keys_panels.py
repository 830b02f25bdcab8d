"""The slot heat map's switch and the Hot keys / Big keys panels, in headless Chromium against
the package's real cluster (1024 slots, one proxy with the default hot-key sampling)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.harness import until
from tests.harness.cluster import Cluster

from .test_page import login, slot_center

BIG_LIST = "ui:big:list"


def pixel(page: Any, slot: int) -> list[int]:
    """The RGB of the middle of a slot's cell on the canvas (64 columns, 2 px gaps)."""
    return page.evaluate("""(slot) => {
        const c = document.querySelector('#slotmap');
        const dpr = window.devicePixelRatio || 1;
        const cell = (c.clientWidth - 2 * 63) / 64;
        const x = (slot % 64) * (cell + 2) + cell / 2;
        const y = Math.floor(slot / 64) * (cell + 2) + cell / 2;
        const px = c.getContext('2d').getImageData(Math.floor(x * dpr), Math.floor(y * dpr),
                                                   1, 1);
        return Array.from(px.data.slice(0, 3));
    }""", slot)


GROUP1 = [0x4F, 0x7D, 0xF3]  # the page's colour of group 1


def test_heat_map_switch_and_legend(page: Any, cluster: Cluster, shots: Path) -> None:
    expect(page.locator("#live")).to_have_text("live")
    page.locator("#slotmap").scroll_into_view_if_needed()
    until(lambda: pixel(page, 5) == GROUP1, 15, "slot 5 in group 1's colour")
    expect(page.locator("#heat-legend")).to_be_hidden()
    # ops/s: the proxy's per-slot counters, a sequential scale with its maximum.
    page.select_option("#heat-mode", "ops")
    legend = page.locator("#heat-legend")
    expect(legend).to_be_visible()
    expect(legend).to_contain_text("ops/s per slot")
    expect(legend).to_contain_text("measured", timeout=20_000)
    until(lambda: pixel(page, 5) != GROUP1, 15, "slot 5 recoloured by ops/s")
    page.mouse.move(*slot_center(page, 5))
    expect(page.locator("#slot-tip .heat-value")).to_contain_text(re.compile(r"ops/s [\d.,]+"))
    # keys: before any big-key scan, from the slot measurement.
    page.select_option("#heat-mode", "keys")
    expect(legend).to_contain_text("keys per slot")
    expect(page.locator("#heat-max")).to_have_text(re.compile(r"^[\d.,]+[kM]?$"),
                                                   timeout=20_000)
    page.screenshot(path=str(shots / "10-heat-keys.png"))
    # Back to owners: the group colours and the group legend.
    page.select_option("#heat-mode", "owner")
    expect(legend).to_be_hidden()
    until(lambda: pixel(page, 5) == GROUP1, 15, "slot 5 in group 1's colour again")
    expect(page.locator("#legend")).to_contain_text("group 1 (")


def test_16384_slots_fit_on_one_screen(page: Any, cluster: Cluster) -> None:
    expect(page.locator("#live")).to_have_text("live")
    # The same drawing code with a 16384-slot overview: 256 columns x 64 rows.
    height = page.evaluate("""() => {
        state.snap = { ...state.snap, overview: { ...state.snap.overview, slots: 16384,
                       ranges: [[0, 8191, 1], [8192, 16383, 2]], migrations: {} } };
        renderSlotMap();
        return document.querySelector('#slotmap').getBoundingClientRect().height;
    }""")
    viewport = page.viewport_size["height"]
    assert 0 < height < viewport / 2, (height, viewport)


def test_big_keys_panel_scan_and_memory_heat(page: Any, cluster: Cluster, shots: Path) -> None:
    client = cluster.proxies[0].client()
    client.delete(BIG_LIST)
    for lo in range(0, 6000, 1000):
        client.rpush(BIG_LIST, *[f"item-{i}" for i in range(lo, lo + 1000)])
    client.close()
    expect(page.locator("#bk-scan")).to_be_hidden()  # read-only until logged in
    login(page)
    expect(page.locator("#auth-state")).to_have_text("admin")
    page.locator("#bigkeys-card").scroll_into_view_if_needed()
    page.click("#bk-scan")
    expect(page.locator(".toast.ok", has_text="Big-key scan started")).to_be_visible()
    expect(page.locator("#bk-state")).to_have_text("done", timeout=60_000)
    expect(page.locator("#bk-figures")).to_contain_text("keys scanned")
    expect(page.locator("#bk-groups [data-group]")).to_have_count(2)
    row = page.locator(f'#bigkeys-table tr[data-key="{BIG_LIST}"]')
    expect(row).to_contain_text("list")
    expect(row).to_contain_text("6,000")
    expect(page.locator('#bigkeys-summary tr[data-type="list"]')).to_contain_text(BIG_LIST)
    expect(page.locator('#bigkeys-summary tr[data-type="string"]')).to_be_visible()
    page.select_option("#bk-type", "list")
    expect(page.locator("#bigkeys-table tbody tr").first).to_have_attribute("data-key", BIG_LIST)
    # memory: now from the scan's per-slot bytes.
    page.select_option("#heat-mode", "memory")
    expect(page.locator("#heat-legend")).to_contain_text("big-key scan", timeout=20_000)
    expect(page.locator("#heat-max")).to_contain_text(re.compile(r"(KiB|MiB)"))
    page.screenshot(path=str(shots / "11-big-keys.png"), full_page=True)
    page.select_option("#heat-mode", "owner")


def test_hot_keys_panel_shows_the_hot_key(page: Any, cluster: Cluster, shots: Path) -> None:
    client = cluster.proxies[0].client()
    page.locator("#hotkeys-card").scroll_into_view_if_needed()
    first = page.locator("#hotkeys-table tbody tr").first

    def hot_first() -> bool:
        pipe = client.pipeline(transaction=False)
        for _ in range(2000):  # far more than the background load in any window
            pipe.incr("ui:hot:counter")
        pipe.execute()
        return first.get_attribute("data-key") == "ui:hot:counter"

    until(hot_first, 60, "the hot key first in the panel")
    client.close()
    expect(first).to_contain_text("%")
    expect(first).to_contain_text("group ")
    expect(page.locator("#hk-span")).to_contain_text("1 proxies")
    # Filtered to the other group, the key is not listed.
    gid = int(re.search(r"group (\d+)", first.inner_text()).group(1))
    page.select_option("#hk-group", str(1 if gid != 1 else 2))
    expect(page.locator('#hotkeys-table tr[data-key="ui:hot:counter"]')).to_have_count(0)
    page.select_option("#hk-group", "")
    page.screenshot(path=str(shots / "12-hot-keys.png"))
    # Leave the cluster as the next tests expect it: only the background load's ops/s.
    def calm() -> bool:
        stats = [p.get("stats") or {} for p in cluster.dash.get("/api/v1/proxies")["proxies"]]
        shown = page.locator("#t-ops").inner_text().replace(",", "")
        return (all((st.get("ops_per_sec") or 0) < 5000 for st in stats)
                and re.fullmatch(r"[\d.]+", shown) is not None and float(shown) < 5000)

    until(calm, 30, "ops/s back to the background load, in the API and on the page")
