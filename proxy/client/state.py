"""What the proxy knows about one client connection: plain data, no behaviour.

Behaviour lives in the connection's *mode* (`client.modes`); this is what CLIENT INFO/LIST
shows and what picks the backend lane.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _accel

# activity, commands and last_read as C fields when compiled: the compiled read callback adds
# to them in place (an int attribute would be a new object on every read).
_Counters = _accel.counters_base("ClientCounters", ("activity", "commands", "last_read"))


@dataclass(slots=True)
class ClientState(_Counters):  # type: ignore[misc, valid-type]
    id: int
    created: float  # loop time of accept
    addr: str = "?"
    laddr: str = "?"  # the proxy's address as this client connected to it
    fd: int = -1
    user: str = "default"  # the user AUTH/HELLO authenticated as (CLIENT LIST's user=)
    name: bytes = b""
    lib_name: bytes = b""
    lib_ver: bytes = b""
    proto: int = 2  # RESP version the client speaks (HELLO)
    lane: int = 0  # index into every group's backend connections (BackendPool.lane_for)
    db: int = 0
    # The last command: its name (dispatch) or argv[0] (fast path, set once per read).
    cmd: str | bytes = b"NULL"
    # Read policy (routing.replicas: 0 master, 1 prefer-replica, 2 replica): the proxy's
    # read_from at connect, changed by READONLY/READWRITE. Not 0: the fast path is off and
    # dispatch.keyed may send read-only commands to a replica.
    read_from: int = 0
    no_evict: bool = False  # CLIENT NO-EVICT (shown as flag "e"; nothing to evict in the proxy)

    # From the counters base (_Counters), not fields, set here: commands (commands
    # dispatched), activity (reads seen: the idle sweep compares it between rounds),
    # last_read (loop time of the last read: CLIENT LIST's idle=).
    def __post_init__(self) -> None:
        self.commands = self.activity = 0
        self.last_read = 0.0
