"""A backend group as the data path routes to it: its master's lanes, and its replicas."""

from __future__ import annotations

from slotcore.slotmap import GroupSpec

from ..backend.conn import BackendConn


class RoutedGroup:
    """One group of the slot map in force. `lanes` is the pool's shared list for the master's
    address (RESP2 lanes, then RESP3 lanes once enabled); a client indexes it with its lane."""

    __slots__ = ("gid", "lanes", "master", "plain", "replicas", "spec")

    def __init__(self, spec: GroupSpec, lanes: list[BackendConn], plain: int) -> None:
        self.gid = spec.gid
        self.master = spec.master
        self.spec = spec
        self.lanes = lanes
        self.plain = plain  # how many RESP2 lanes lead the list
        # The replicas the map names (reads from replicas: routing.replicas picks among those
        # its health checks find in sync; their lanes open on first use).
        self.replicas = spec.replicas

    @property
    def up(self) -> bool:
        return any(c.up for c in self.lanes[: self.plain])
