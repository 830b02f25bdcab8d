"""Where a Pub/Sub channel lives, and the process-wide Pub/Sub hub.

A plain channel is hashed like a key (`key_slot`, hash tags included) and lives on the group
owning that slot: PUBLISH goes there, and every subscriber of the channel is subscribed there,
so the backend's own PUBLISH count is exact. Two refinements:

* `__keyspace@<db>__:<key>` lives on the group owning `<key>`: the backend that fires the
  notification is the one holding the key.
* `__keyevent@<db>__:<event>` fires on every backend, so its subscribers are subscribed on every
  group (like patterns); a PUBLISH to it still goes to one group only.

Patterns (PSUBSCRIBE) are subscribed on every group: a message reaches a pattern subscriber
only from the group the channel lives on, so each client is still counted once per matching
pattern. Shard channels (SSUBSCRIBE) live on their slot's group, as in Redis Cluster.

A slot in transit belongs to its source until the map that ends the move: subscriptions
follow the slot when the proxy applies that map (`ChannelHub.on_map`).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from slotcore.keyslot import key_slot

from ..backend.subscriber import CHANNELS, PATTERNS, SubscriberPool
from ..config import ProxyConfig
from ..observe.stats import ProxyStats
from .groups import RoutedGroup
from .router import Router

KEYSPACE = b"__keyspace@"
KEYEVENT = b"__keyevent@"


class Reconcilable(Protocol):
    def reconcile(self, prune: bool) -> None: ...


def channel_slot(channel: bytes, nslots: int) -> int:
    """The slot a plain channel lives in (a keyspace channel: its key's slot)."""
    if channel.startswith(KEYSPACE):
        i = channel.find(b"__:", len(KEYSPACE))
        if i >= 0:
            return key_slot(channel[i + 3:], nslots)
    return key_slot(channel, nslots)


class ChannelHub:
    """Placement of channels on groups, the subscriber connection pool, and the subscribed
    clients (re-placed whenever a new slot map is applied)."""

    def __init__(self, router: Router, cfg: ProxyConfig, stats: ProxyStats) -> None:
        self.router = router
        self.cfg = cfg.pubsub
        self.pool = SubscriberPool(cfg.backend, cfg.pubsub, stats)
        self.clients: set[Reconcilable] = set()
        self.router.on_swap(self.on_map)

    def owner(self, slot: int) -> RoutedGroup | None:
        router = self.router
        g = router.by_slot[slot]
        if g is None:
            ts = router.transit.slots.get(slot)
            if ts is not None:
                g = ts.src  # in transit: the source's until the move ends
        return g

    def publish_group(self, channel: bytes) -> RoutedGroup | None:
        g = self.owner(channel_slot(channel, self.router.nslots))
        return g if g is not None else self.router.any_group()

    def place(self, kind: int, name: bytes) -> list[str]:
        """The backend addresses a subscription of `kind` to `name` is made on."""
        router = self.router
        if kind == PATTERNS or (kind == CHANNELS and name.startswith(KEYEVENT)):
            return [g.master for g in router.groups.values()]
        slot = (channel_slot(name, router.nslots) if kind == CHANNELS
                else key_slot(name, router.nslots))
        g = self.owner(slot)
        return [g.master] if g is not None else []

    def on_map(self) -> None:
        """A new slot map is in force: subscribe where channels live now at once, and leave
        the old places after `resubscribe_grace` (proxies apply a map at slightly different
        times; a client subscribed in both places still gets each message once, since a
        PUBLISH goes to one group)."""
        for c in list(self.clients):
            c.reconcile(False)
        loop = asyncio.get_running_loop()
        loop.call_later(self.cfg.resubscribe_grace, self._prune)

    def _prune(self) -> None:
        for c in list(self.clients):
            c.reconcile(True)
