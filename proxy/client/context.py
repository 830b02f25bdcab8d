"""What a client connection sees of the process, and what the rest of the data path sees of a
client connection.

`Services` is built once by the composition root (`proxy.app`) and shared by every
connection. `Client` is the surface of a connection that dispatch, the modes, the handlers and
the fan-out use; `client.connection.ClientConnection` implements it. Keeping it a Protocol here
means none of those modules imports the connection module (no import circles).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..backend.conn import Flusher
from ..backend.pool import BackendPool
from ..commands.table import CommandSpec, CommandTable
from ..config import ProxyConfig
from ..observe.hotkeys import HotKeys
from ..observe.stats import ProxyStats
from ..routing.groups import RoutedGroup
from ..routing.router import Router
from .reply import ReplySlot
from .state import ClientState


class Mode:
    """A connection's behaviour (the modes themselves are in `client.modes`)."""

    # No instance __dict__ (modes that keep state add their own): the compiled read callback
    # then reads `fast_path` as a class constant, from its attribute cache.
    __slots__ = ()

    name = "base"
    fast_path = False  # whether the connection's inlined single-key fast path may run
    multi = -1  # commands queued in MULTI (CLIENT LIST's multi=), -1 outside MULTI

    def intercept(self, client: Client, spec: CommandSpec, argv: list[bytes],
                  packed: bytes) -> bool:
        """Answer or keep the command instead of running it (True), or let it run (False)."""
        return False

    def rejected(self, client: Client) -> None:
        """The current command was refused before running (unknown, wrong arity ...)."""

    def leave(self, client: Client) -> None:
        """The connection is reset (RESET) or gone: give back what the mode holds."""


class Client(Protocol):
    state: ClientState
    services: Services
    mode: Mode
    fifo: deque[ReplySlot]
    closing: bool
    closed: bool
    # Pub/Sub state (`client.modes.subscribed.Subscriptions`) once the client subscribed.
    subs: Any
    output_limit: int
    reading: bool
    # Metrics: the timed request being dispatched (client.timed.Timing), or None.
    timing: Any

    def reply(self, raw: bytes) -> None: ...

    def expect(self) -> ReplySlot: ...

    def send(self, group: RoutedGroup, packed: bytes) -> None: ...

    def set_mode(self, mode: Mode) -> None: ...

    def push(self, raw: bytes) -> None: ...

    def switch_protocol(self, proto: int) -> None: ...

    def close_after_replies(self) -> None: ...

    def close_now(self) -> None: ...

    def defer(self, argv: list[bytes]) -> bool: ...

    def barrier(self) -> None: ...

    def peer_closed(self) -> bool: ...

    def reply_mode(self, mode: bytes) -> None: ...

    def hold_later_commands(self) -> None: ...

    def run_after_replies(self, argv: list[bytes], packed: bytes) -> None: ...


class BlockingEngine(Protocol):
    """What dispatch, the handlers and INFO use of `proxy.blocking.Blocking` (which sits above
    this package)."""

    @property
    def blocked_clients(self) -> int: ...

    def start(self, client: Client, spec: CommandSpec, argv: list[bytes],
              packed: bytes) -> None: ...

    def unblock(self, requester: Client, client_id: int, how: bytes) -> None: ...


class ClientRegistry:
    """Every connected client, and the admission rule (max_clients, shutting down)."""

    def __init__(self, max_clients: int, stats: ProxyStats) -> None:
        self.max_clients = max_clients
        self.stats = stats
        self.clients: set[Client] = set()
        self.accepting = True
        self._next_id = 0

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def admit(self, client: Client) -> bool:
        self.stats.connections_received += 1
        if not self.accepting or len(self.clients) >= self.max_clients:
            self.stats.rejected_connections += 1
            return False
        self.clients.add(client)
        return True

    def forget(self, client: Client) -> None:
        self.clients.discard(client)

    def __len__(self) -> int:
        return len(self.clients)


@dataclass(slots=True)
class Services:
    """The process-wide parts every client connection uses."""

    cfg: ProxyConfig
    table: CommandTable
    router: Router
    pool: BackendPool
    stats: ProxyStats
    flusher: Flusher
    clients: ClientRegistry
    loop: asyncio.AbstractEventLoop
    # The blocked calls (proxy.blocking; their connections are `pool.dedicated`); set by
    # proxy.app.
    blocking: BlockingEngine | None = None
    backend_version: str = "7.0.0"
    table_source: str = "builtin"
    # The listener's address once bound (INFO's tcp_port, CLIENT LIST).
    host: str = ""
    port: int = 0
    # The Pub/Sub hub (`routing.channels.ChannelHub`), made by the first subscriber.
    pubsub: Any = None
    # SCAN's record of the slot moves of each applied map (`fanout.scan.MoveLog`), fed by a
    # router listener (proxy.app).
    moves: Any = None
    # INFO fields the proxy states itself, by section title: {"Cluster": {"cluster_enabled":
    # "1"}} (the Redis Cluster masquerade fills this).
    info_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    # The sampled top-k of keys (observe/hotkeys.py): the request path counts its countdown.
    hotkeys: HotKeys = field(default_factory=HotKeys.disabled)

    def loop_time(self) -> float:
        return self.loop.time()
