"""The dashboard's `GET /metrics` (Prometheus text format) and the fleet-wide latency view.

Everything is read when Prometheus scrapes: the topology in force, the health poller's last
INFO of every server, the proxy registry, the migrator's progress and one timed read of the
store; then a collector turns that snapshot into metric families and `prometheus_client`'s
exposition writes them (so `promtool check metrics` accepts it).

Series (prefix `slotproxy_dashboard_`): info, is_leader, topology_epoch, groups,
group_slots, group_master_up, server_up, replica_lag_bytes, replica_link_up, proxies (by
state online/stale), migration_slots (by state), migration_keys_per_second,
migration_keys_moved_total, migration_bytes_moved_total, migration_slots_done_total,
failovers_total, store_up, store_latency_seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from ..control.plane import ControlPlane
from ..control.proxies import ProxyRegistry
from ..model.records import Topology
from ..observe.health import HealthMonitor
from ..store.base import Store, StoreError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
P = "slotproxy_dashboard_"


async def snapshot(plane: ControlPlane, proxies: ProxyRegistry, health: HealthMonitor,
                   migrator: Any, store: Store) -> dict[str, Any]:
    # `migrator`: dashboard.migrate.migrator.Migrator (duck-typed: migrate sits above observe).
    """What one scrape reports, gathered from the running parts."""
    topo = await plane.topology()
    t0 = time.perf_counter()
    try:
        await store.get(plane.keys.topology)
        store_up, store_latency = True, time.perf_counter() - t0
    except StoreError:
        store_up, store_latency = False, None
    views = await proxies.views(from_store=not plane.leading.is_set())
    return {
        "topo": topo,
        "servers": dict(health.servers),
        "proxies": views,
        "migration": migrator.view(topo),
        "role": plane.role,
        "id": plane.info["id"],
        # The HA work adds a failover counter to the control plane; 0 until it exists.
        "failovers": getattr(plane, "failovers", 0),
        "store_up": store_up,
        "store_latency": store_latency,
    }


class DashboardCollector:
    def __init__(self, snap: dict[str, Any]) -> None:
        self.snap = snap

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        topo: Topology = s["topo"]
        servers: dict[str, dict[str, Any]] = s["servers"]
        info = GaugeMetricFamily(P + "info", "This dashboard (always 1)", labels=["id", "role"])
        info.add_metric([s["id"], s["role"]], 1)
        yield info
        yield GaugeMetricFamily(P + "is_leader", "1 when this dashboard is the leader",
                                value=1 if s["role"] == "leader" else 0)
        yield GaugeMetricFamily(P + "topology_epoch", "Epoch of the topology",
                                value=topo.epoch)
        yield GaugeMetricFamily(P + "groups", "Groups in the topology", value=len(topo.groups))

        slots: dict[int, int] = {}
        for g in topo.owner:
            if g:
                slots[g] = slots.get(g, 0) + 1
        gslots = GaugeMetricFamily(P + "group_slots", "Slots owned by the group",
                                   labels=["group"])
        mup = GaugeMetricFamily(P + "group_master_up", "1 when the group's master answers "
                                "as a master", labels=["group", "master"])
        sup = GaugeMetricFamily(P + "server_up", "1 when the server answered the last health "
                                "poll", labels=["group", "addr", "role"])
        lag = GaugeMetricFamily(P + "replica_lag_bytes", "Replication offset behind the "
                                "group's master", labels=["group", "addr"])
        link = GaugeMetricFamily(P + "replica_link_up", "1 when the replica's link to its "
                                 "master is up", labels=["group", "addr"])
        unassigned = topo.nslots - sum(slots.values())
        for gid, group in sorted(topo.groups.items()):
            g = str(gid)
            gslots.add_metric([g], slots.get(gid, 0))
            master = servers.get(group.master or "", {})
            mup.add_metric([g, group.master or ""], 1 if (
                group.master and master.get("reachable") is True
                and master.get("role") == "master") else 0)
            for addr in group.servers:
                h = servers.get(addr, {})
                role = "master" if addr == group.master else "replica"
                sup.add_metric([g, addr, role], 1 if h.get("reachable") is True else 0)
                if role == "replica" and h.get("reachable") is True:
                    link.add_metric([g, addr], 1 if h.get("master_link") == "up" else 0)
                    if master.get("reachable") is True:
                        lag.add_metric([g, addr], max(0, master.get("repl_offset", 0)
                                                      - h.get("repl_offset", 0)))
        yield from (gslots, mup, sup, lag, link)
        yield GaugeMetricFamily(P + "unassigned_slots", "Slots no group owns",
                                value=unassigned)

        proxies = GaugeMetricFamily(P + "proxies", "Registered proxies by state",
                                    labels=["state"])
        stale = sum(1 for p in s["proxies"] if p.get("stale"))
        proxies.add_metric(["online"], len(s["proxies"]) - stale)
        proxies.add_metric(["stale"], stale)
        yield proxies

        mig = s["migration"]
        states = GaugeMetricFamily(P + "migration_slots", "Slots in a migration, by state",
                                   labels=["state"])
        for st in ("pending", "migrating", "locked"):
            states.add_metric([st], mig["states"].get(st, 0))
        for st, n in sorted(mig["states"].items()):
            if st not in ("pending", "migrating", "locked"):
                states.add_metric([st], n)
        yield states
        yield GaugeMetricFamily(P + "migration_keys_per_second", "Keys moved per second "
                                "(recent window)", value=mig["rate_keys_per_sec"])
        yield CounterMetricFamily(P + "migration_keys_moved", "Keys moved by this dashboard",
                                  value=mig["keys_moved"])
        yield CounterMetricFamily(P + "migration_bytes_moved", "Bytes moved by this dashboard",
                                  value=mig["bytes_moved"])
        yield CounterMetricFamily(P + "migration_slots_done", "Slots whose migration "
                                  "finished", value=mig["slots_done"])
        yield CounterMetricFamily(P + "failovers", "Failovers the control plane carried out",
                                  value=s["failovers"])
        yield GaugeMetricFamily(P + "store_up", "1 when the store answered this scrape's read",
                                value=1 if s["store_up"] else 0)
        if s["store_latency"] is not None:
            yield GaugeMetricFamily(P + "store_latency_seconds", "Time of one store read of "
                                    "the topology, taken at this scrape",
                                    value=s["store_latency"])


def exposition(snap: dict[str, Any]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DashboardCollector(snap))  # type: ignore[arg-type]
    return generate_latest(registry)
