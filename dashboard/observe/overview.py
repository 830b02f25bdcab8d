"""The status document: the body of `GET /api/v1/topology` and of every live snapshot.

Built from the control plane's public views, the health poller's last results and the proxy
registry, on leader and standby alike.
"""

from __future__ import annotations

from typing import Any

from slotcore.ranges import format_ranges

from ..control.plane import ControlPlane
from ..model.changes import group_view
from .health import HealthMonitor, group_health


async def overview(plane: ControlPlane, health: HealthMonitor) -> dict[str, Any]:
    topo = await plane.topology()
    healths = group_health(topo, health.servers)
    groups = []
    for gid in sorted(topo.groups):
        groups.append({**group_view(topo, gid), "health": healths[str(gid)]})
    unassigned = [s for s, g in enumerate(topo.owner) if g == 0]
    return {
        "dashboard": {**plane.info, "role": plane.role, "leader": await plane.leader(),
                      "cluster": plane.cluster},
        "epoch": topo.epoch,
        "slots": topo.nslots,
        "groups": groups,
        "ranges": [list(r) for r in topo.ranges()],
        "unassigned": format_ranges(unassigned),
        "migrations": {str(s): m.to_json() for s, m in sorted(topo.migrations.items())},
        "proxies": await plane.proxy_views(),
    }
