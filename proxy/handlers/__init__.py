"""Commands the proxy answers itself (route LOCAL), by base command name."""

from __future__ import annotations

from collections.abc import Callable

from ..client.context import Client
from . import cluster, connection, keyspace, observe, pubsub, server, transaction

Handler = Callable[[Client, list[bytes]], None]

# Later entries win: cluster's READONLY/READWRITE (which depend on cluster.masquerade) replace
# connection's.
HANDLERS: dict[str, Handler] = {**connection.HANDLERS, **server.HANDLERS, **cluster.HANDLERS,
                               **pubsub.HANDLERS, **transaction.HANDLERS, **keyspace.HANDLERS,
                               **observe.HANDLERS}
