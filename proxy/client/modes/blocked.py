"""A client blocked in BLPOP, XREAD BLOCK, WAIT ...: its later commands wait behind it.

The connection's `lane_barrier` keeps every command pipelined after the blocking one in the
backlog until the blocking reply is written (so they run afterwards, in order, as in Redis);
this mode only turns the fast path off and ties the blocked call to the connection, so a
client that disconnects while blocked frees its dedicated backend connection at once.
The blocking machinery itself is `proxy.blocking`.
"""

from __future__ import annotations

from typing import Protocol

from ..context import Client, Mode


class Call(Protocol):
    def abort(self) -> None: ...


class BlockedMode(Mode):
    name = "blocked"
    fast_path = False

    __slots__ = ("call", "previous")

    def __init__(self, previous: Mode, call: Call) -> None:
        self.previous = previous  # the mode to return to once the reply is in
        self.call = call

    def leave(self, client: Client) -> None:
        """The client is gone while blocked: its call (and dedicated connection) goes, and
        so does whatever the mode it blocked in holds (a WATCH's connection)."""
        self.call.abort()
        self.previous.leave(client)
