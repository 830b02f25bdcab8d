"""What a person sees and does on the dashboard's web page, in headless Chromium.

The tests share one cluster and run in file order like an operator's session: look around
read-only, log in, get refused, migrate a range dragged on the slot map, cancel a migration,
add a group from the page and rebalance onto it. Screenshots go to the artifacts directory;
with SLOTPROXY_UPDATE_SCREENSHOT=1 the last one also replaces docs/screenshot.png (the README
picture), so an ordinary run leaves the checkout clean.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.harness import TOKEN, until
from tests.harness.cluster import Cluster

from .conftest import REPO


def login(page: Any, token: str = TOKEN) -> None:
    page.click("#login-btn")
    page.fill("#login-token", token)
    page.click("#login-submit")


def owners(cluster: Cluster) -> list[int]:
    return list(cluster.slotmap().owner)


def slot_center(page: Any, slot: int) -> tuple[float, float]:
    """Where a slot's cell is on screen (64 columns for 1024 slots, 2 px gaps)."""
    box = page.locator("#slotmap").bounding_box()
    cell = (box["width"] - 2 * 63) / 64
    col, row = slot % 64, slot // 64
    return box["x"] + col * (cell + 2) + cell / 2, box["y"] + row * (cell + 2) + cell / 2


def drag(page: Any, first: int, last: int) -> None:
    page.locator("#slotmap").scroll_into_view_if_needed()
    x0, y0 = slot_center(page, first)
    x1, y1 = slot_center(page, last)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()


def legend_count(page: Any, gid: int) -> int:
    text = page.locator("#legend").inner_text()
    m = re.search(rf"group {gid} \((\d+)\)", text)
    return int(m.group(1)) if m else 0


def test_overview_and_slot_map_read_only(page: Any, cluster: Cluster, shots: Path) -> None:
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("#groups-table tr[data-server]")).to_have_count(2)
    for srv in cluster.redis:
        row = page.locator(f'#groups-table tr[data-server="{srv.addr}"]')
        expect(row).to_contain_text("master")
    expect(page.locator("#proxies-table tr[data-proxy='proxy-0']")).to_contain_text("online")
    expect(page.locator("#legend")).to_contain_text("group 1 (512)")
    expect(page.locator("#legend")).to_contain_text("group 2 (512)")
    expect(page.locator("#t-slots")).to_have_text("1024")
    expect(page.locator("#epoch")).to_have_text(re.compile(r"^\d+$"))
    # Live numbers: the background traffic shows up as proxy ops/s without a reload.
    until(lambda: float(page.locator("#t-ops").inner_text().replace(",", "") or 0) > 0, 15,
          "ops/s on the page")
    # Read-only: no action controls until logged in.
    expect(page.locator("#auth-state")).to_have_text("read-only")
    expect(page.locator("#mig-form")).to_be_hidden()
    expect(page.locator("#group-add")).to_be_hidden()
    # Hover shows the slot's number, owner and (once measured) its keys and ops/s.
    page.locator("#slotmap").scroll_into_view_if_needed()
    page.mouse.move(*slot_center(page, 700))
    tip = page.locator("#slot-tip")
    expect(tip).to_contain_text("slot 700")
    expect(tip).to_contain_text("group 2")
    expect(tip).to_contain_text(re.compile(r"keys \d+"), timeout=20_000)
    page.screenshot(path=str(shots / "01-overview-readonly.png"), full_page=True)


def test_login_and_refused_action_shows_the_error(page: Any, cluster: Cluster,
                                                  shots: Path) -> None:
    login(page, "not-the-token")
    expect(page.locator("#login-error")).to_contain_text("not the admin token")
    page.fill("#login-token", TOKEN)
    page.click("#login-submit")
    expect(page.locator("#auth-state")).to_have_text("admin")
    expect(page.locator("#mig-form")).to_be_visible()
    # Group 1 owns slots: the dashboard refuses to remove it and the page says why.
    page.get_by_role("button", name="Remove").and_(page.get_by_title("remove group 1")).click()
    err = page.locator(".toast.error")
    expect(err).to_contain_text("group 1 still owns slots")
    expect(err).to_contain_text("refused")
    page.screenshot(path=str(shots / "02-refused.png"))
    assert 1 in owners(cluster)


def test_migrate_a_range_dragged_on_the_map(page: Any, cluster: Cluster, shots: Path) -> None:
    login(page)
    expect(page.locator("#auth-state")).to_have_text("admin")
    before = owners(cluster)
    assert set(before[0:64]) == {1}
    drag(page, 0, 63)
    expect(page.locator("#selected-range")).to_have_text("0-63")
    expect(page.locator("#mig-slots")).to_have_value("0-63")
    page.select_option("#mig-target", "2")
    page.click("#mig-start")
    queued = page.locator(".toast.ok", has_text="Migration of 0-63 to group 2 queued")
    expect(queued).to_be_visible()
    page.screenshot(path=str(shots / "03-migration-started.png"), full_page=True)
    # The page follows it live and ends with the map redrawn.
    expect(page.locator("#legend")).to_contain_text("group 2 (576)", timeout=45_000)
    expect(page.locator("#mig-table")).to_contain_text("no slots moving")
    expect(page.locator("#mig-figures")).to_contain_text("64 slots moved")
    assert set(owners(cluster)[0:64]) == {2}
    cluster.check_placement()
    page.screenshot(path=str(shots / "04-migration-done.png"), full_page=True)


def test_cancel_a_queued_migration(page: Any, cluster: Cluster, shots: Path) -> None:
    login(page)
    expect(page.locator("#auth-state")).to_have_text("admin")
    # Paused, so the slots wait in "pending" long enough to be cancelled by a person.
    status, body = cluster.dash.call("PUT", "/api/v1/migrations/settings", {"paused": True})
    assert status == 200, body
    try:
        page.fill("#mig-slots", "600-615")
        page.select_option("#mig-target", "1")
        page.click("#mig-start")
        expect(page.locator("#mig-table tr[data-slot]")).to_have_count(16)
        expect(page.locator("#mig-table")).to_contain_text("pending")
        expect(page.locator("#legend")).to_contain_text("migrating (16)")
        page.screenshot(path=str(shots / "05-migration-queued.png"), full_page=True)
        page.click("#mig-cancel")
        expect(page.locator(".toast.ok", has_text="Migration cancelled")).to_be_visible()
        expect(page.locator("#mig-table")).to_contain_text("no slots moving")
    finally:
        cluster.dash.call("PUT", "/api/v1/migrations/settings", {"paused": False})
    assert set(owners(cluster)[600:616]) == {2}


def test_add_group_and_rebalance_onto_it(page: Any, cluster: Cluster, shots: Path) -> None:
    login(page)
    expect(page.locator("#auth-state")).to_have_text("admin")
    spare = cluster.spare  # type: ignore[attr-defined]
    page.fill("#group-add input[name=gid]", "3")
    page.fill("#group-add input[name=master]", spare.addr)
    page.click("#group-add button[type=submit]")
    expect(page.locator(".toast.ok", has_text="Group added")).to_be_visible()
    expect(page.locator(f'#groups-table tr[data-server="{spare.addr}"]')).to_contain_text(
        "master")
    # Plan first: the moves are shown and nothing moves yet.
    page.click("#rb-plan")
    expect(page.locator("#rb-result")).to_contain_text("Planned:")
    moves = page.locator("#rb-table tbody tr")
    expect(moves.first).to_contain_text("group 3")
    assert 3 not in owners(cluster)
    page.screenshot(path=str(shots / "06-rebalance-plan.png"), full_page=True)
    page.click("#rb-run")
    expect(page.locator(".toast.ok", has_text="Rebalance started")).to_be_visible()
    until(lambda: legend_count(page, 3) >= 341 and "no slots moving"
          in page.locator("#mig-table").inner_text(), 60, "rebalance to finish on the page")
    counts = [legend_count(page, g) for g in (1, 2, 3)]
    assert sum(counts) == 1024 and max(counts) - min(counts) <= 1, counts
    assert owners(cluster).count(3) == counts[2]
    cluster.check_placement()
    # The README picture: the balanced map, a hovered slot, charts with a few minutes' data.
    page.select_option("#chart-window", "60")
    page.evaluate("document.querySelector('#toasts').replaceChildren()")
    page.mouse.move(*slot_center(page, 900))
    expect(page.locator("#slot-tip")).to_contain_text("slot 900")
    expect(page.locator("#slot-tip")).to_contain_text(re.compile(r"keys \d+"), timeout=20_000)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar belongs at the top
    path = shots / "07-rebalanced.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SLOTPROXY_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(path, REPO / "docs" / "screenshot.png")


def test_add_a_replica_and_promote_it(page: Any, cluster: Cluster, shots: Path) -> None:
    login(page)
    expect(page.locator("#auth-state")).to_have_text("admin")
    replica = cluster.spare_replica  # type: ignore[attr-defined]
    old = cluster.redis[0].addr
    page.fill('#groups-table input[data-gid="1"]', replica.addr)
    page.locator('#groups-table input[data-gid="1"] + button').click()
    expect(page.locator(".toast.ok", has_text=f"Server {replica.addr} added")).to_be_visible()
    row = page.locator(f'#groups-table tr[data-server="{replica.addr}"]')
    expect(row).to_contain_text("replica")
    # its replication health: link up and the lag, live
    expect(row).to_contain_text("link up", timeout=20_000)
    expect(row).to_contain_text(re.compile(r"lag \d"))
    page.screenshot(path=str(shots / "08-replica-added.png"), full_page=True)
    row.get_by_role("button", name="Promote").click()
    expect(page.locator(".toast.ok", has_text=f"{replica.addr} is now the master of group 1")
           ).to_be_visible(timeout=20_000)
    until(lambda: cluster.dash.get("/api/v1/groups/1")["master"] == replica.addr, 10,
          "the promotion to be recorded")
    expect(row).to_contain_text("master")
    old_row = page.locator(f'#groups-table tr[data-server="{old}"]')
    expect(old_row).to_contain_text("link up", timeout=20_000)  # the old master follows it
    page.screenshot(path=str(shots / "09-promoted.png"), full_page=True)
