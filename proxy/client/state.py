"""What the proxy knows about one client connection: plain data, no behaviour.

Behaviour lives in the connection's *mode* (`client.modes`); this is what CLIENT INFO/LIST
shows and what picks the backend lane.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ClientState:
    id: int
    created: float  # loop time of accept
    addr: str = "?"
    name: bytes = b""
    lib_name: bytes = b""
    lib_ver: bytes = b""
    proto: int = 2  # RESP version the client speaks (HELLO)
    lane: int = 0  # index into every group's backend connections (BackendPool.lane_for)
    db: int = 0
    commands: int = 0  # commands dispatched
    activity: int = 0  # reads seen: the idle sweep compares it between rounds
