"""What the proxy knows about one client connection: plain data, no behaviour.

Behaviour lives in the connection's *mode* (`client.modes`); this is what CLIENT INFO/LIST
shows and what picks the backend lane.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _accel


def _state_class(counters: type, name: str) -> type:
    """ClientState over a base holding its per-read counters (activity, commands, last_read):
    plain slots for the Python hot path, C fields for the compiled one (its read callback adds
    to them in place; an int attribute is a new object on every read, while the Python path
    reads and writes plain slots fastest)."""

    @dataclass(slots=True)
    class State(counters):  # type: ignore[misc, valid-type]
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
        # CLIENT NO-EVICT (shown as flag "e"; nothing to evict in the proxy)
        no_evict: bool = False

        # From the counters base, not fields, set here: commands (commands
        # dispatched), activity (reads seen: the idle sweep compares it between rounds),
        # last_read (loop time of the last read: CLIENT LIST's idle=).
        def __post_init__(self) -> None:
            self.commands = self.activity = 0
            self.last_read = 0.0

    State.__name__ = State.__qualname__ = name
    return State


ClientState, CompiledClientState = _accel.counter_classes(
    _state_class, "ClientState", "ClientCounters", ("activity", "commands", "last_read"))


def new_client_state(**fields: object) -> ClientState:  # type: ignore[valid-type]
    """The state of a client connection made now, on the hot path selected (proxy._accel)."""
    return _accel.for_hot_path(ClientState, CompiledClientState)(**fields)  # type: ignore
