"""The proxy's per-command behaviour: the one place where a command's route is decided.

A command's route says which code serves it (see `proxy.dispatch`): KEYED commands go to the
group owning their key(s), SPLIT ones are split per group and merged, LOCAL ones are answered
by the proxy, BLOCKING ones run on a dedicated backend connection (`proxy.blocking`),
UNSUPPORTED ones get an error naming why.
"""

from __future__ import annotations

import enum
from typing import Protocol


class Route(enum.IntEnum):
    KEYED = 1  # forward to the group owning its key(s); all keys must share one slot
    SPLIT = 2  # split per group by the proxy, replies merged (MGET MSET DEL UNLINK EXISTS TOUCH)
    LOCAL = 3  # answered by the proxy itself
    UNSUPPORTED = 4  # refused with "-ERR command 'X' is not supported by the proxy"
    BLOCKING = 5  # on a dedicated backend connection of the key's group (proxy.blocking)


_KEYSPACE = "keyspace-wide"
_ADMIN = "administrative"
_NO_KEY = "no key to route by"


def _policy(route: Route, reason: str, names: str) -> dict[str, tuple[Route, str]]:
    return {name: (route, reason) for name in names.split()}


# name -> (route, reason).  Names are lowercase; "container|sub" entries override the container's
# entry, which overrides the default rule (see `route_for`).  Commands not named here get the
# default rule: KEYED if they have keys, else UNSUPPORTED "no key to route by".
POLICY: dict[str, tuple[Route, str]] = {
    **_policy(Route.SPLIT, "", "mget mset del unlink exists touch"),
    # CLUSTER, READONLY, READWRITE, ASKING: the proxy answers as a Redis Cluster of proxies
    # (handlers/cluster.py); SCRIPT: the proxy fans LOAD/EXISTS/FLUSH
    # out to every group itself, so EVALSHA works whichever group a key lands on.
    **_policy(
        Route.LOCAL,
        "",
        "ping echo quit auth hello select client command info dbsize time reset readonly "
        "readwrite cluster script multi exec discard watch unwatch asking",
    ),
    # XREAD/XREADGROUP are deliberately absent: they stay KEYED and take the blocking path
    # only when they carry a BLOCK argument (see `is_blocking_call`). WAIT has no key: it runs
    # on every group (proxy.blocking.WaitCall).
    **_policy(
        Route.BLOCKING,
        "",
        "blpop brpop brpoplpush blmove blmpop bzpopmin bzpopmax bzmpop wait",
    ),
    # WAITAOF (Redis 7.2) counts the fsyncs of this connection's own writes; the proxy's
    # writes go over shared connections, so it could not give that number honestly.
    **_policy(Route.UNSUPPORTED, "its per-connection AOF offset is not kept through the proxy",
              "waitaof"),
    # Pub/Sub: channels are placed on groups by the proxy (handlers/pubsub.py).
    **_policy(
        Route.LOCAL,
        "",
        "subscribe unsubscribe psubscribe punsubscribe ssubscribe sunsubscribe publish spublish "
        "pubsub",
    ),
    **_policy(Route.UNSUPPORTED, _ADMIN, "monitor"),
    # Keyspace-wide commands, CONFIG and FUNCTION: across every group (handlers/keyspace.py).
    **_policy(Route.LOCAL, "", "keys scan randomkey flushall flushdb lastsave config function"),
    **_policy(Route.UNSUPPORTED, "the proxy serves DB 0 only", "swapdb move"),
    # SLOWLOG: the proxy's own log of requests slow end to end (handlers/server.py); each
    # group's own is read with `proxyctl slowlog`.
    **_policy(Route.LOCAL, "", "slowlog"),
    # MEMORY USAGE and OBJECT ENCODING/FREQ/IDLETIME/REFCOUNT are not listed: they have a key and
    # fall through to KEYED.
    **_policy(
        Route.UNSUPPORTED,
        _ADMIN,
        "debug sync psync replconf latency lolwut role memory|doctor "
        "memory|stats memory|malloc-stats memory|purge object|help",
    ),
    **_policy(Route.UNSUPPORTED, "it would stop one backend; stop the proxy with SIGTERM",
              "shutdown"),
    **_policy(Route.UNSUPPORTED, "persistence is configured on each backend",
              "save bgsave bgrewriteaof"),
    **_policy(Route.UNSUPPORTED, "replication and failover are run by the dashboard/Sentinel",
              "slaveof replicaof failover"),
    **_policy(Route.UNSUPPORTED, "proxy users are set in its config (password, username)",
              "acl"),
    **_policy(Route.UNSUPPORTED, "modules are loaded on each backend", "module"),
    # The proxy migrates slots itself; a client-driven MIGRATE would bypass the slot map.
    **_policy(Route.UNSUPPORTED, "use the keyed form", "migrate"),
}


def route_for(name: str, container: str | None, has_keys: bool) -> tuple[Route, str]:
    """The (route, reason) of command `name` ("object|encoding" for a subcommand)."""
    entry = POLICY.get(name)
    if entry is None and container is not None:
        entry = POLICY.get(container)
    if entry is not None:
        return entry
    return (Route.KEYED, "") if has_keys else (Route.UNSUPPORTED, _NO_KEY)



class _Named(Protocol):
    name: str
    flags: frozenset[str]


_XREAD_OPTS_START = {"xread": 1, "xreadgroup": 4}  # XREADGROUP GROUP g c [options] STREAMS ...


def is_blocking_call(spec: _Named, argv: list[bytes]) -> bool:
    """Whether this call would block: a "blocking" command, except that XREAD/XREADGROUP block
    only when given a BLOCK option."""
    if "blocking" not in spec.flags:
        return False
    if spec.name not in _XREAD_OPTS_START:
        return True
    return block_option_at(spec.name, argv) is not None


def block_option_at(name: str, argv: list[bytes]) -> int | None:
    """XREAD/XREADGROUP: the index of the BLOCK option (its value follows, if given), found
    among the options before STREAMS so that a stream or group named "block" doesn't count;
    None without one, or for another command."""
    i = _XREAD_OPTS_START.get(name)
    if i is None:
        return None
    argc = len(argv)
    while i < argc:
        opt = argv[i].lower()
        if opt == b"streams":
            return None
        if opt == b"block":
            return i
        i += 2 if opt == b"count" else 1  # skip COUNT's value; NOACK has none
    return None

