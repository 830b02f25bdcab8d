"""Pub/Sub commands: (P|S)(UN)SUBSCRIBE, PUBLISH, SPUBLISH and PUBSUB.

Subscriptions are the client's own (`client.modes.subscribed`), made on dedicated backend
connections; PUBLISH/SPUBLISH are plain request/reply commands on the client's shared lane, sent
to the group the channel lives on (`routing.channels`), so their reply is the backend's exact
count of receivers. PUBSUB CHANNELS/SHARDCHANNELS are the union over every group, NUMPAT the
largest group figure (every pattern is on every group), NUMSUB/SHARDNUMSUB ask each channel's
own group — the count a PUBLISH to it would reach, without patterns, as in Redis.
"""

from __future__ import annotations

from slotcore.keyslot import key_slot
from slotcore.resp import encode_int, pack_tuple, split_array

from ..backend.subscriber import CHANNELS, PATTERNS, SHARDS
from ..client.context import Client, Services
from ..client.modes.subscribed import Subscriptions
from ..client.reply import Gather
from ..errors import CLUSTERDOWN, CROSSSLOT, unknown_subcommand
from ..fanout.merge import first_error
from ..fanout.split import broadcast
from ..routing.channels import ChannelHub, channel_slot
from ..routing.groups import RoutedGroup


def hub_of(services: Services) -> ChannelHub:
    """The process's Pub/Sub hub, made by the first subscriber."""
    hub = services.pubsub
    if hub is None:
        hub = services.pubsub = ChannelHub(services.router, services.cfg, services.stats)
    return hub


def _subs(c: Client) -> Subscriptions:
    subs = c.subs
    if subs is None:
        subs = c.subs = Subscriptions(c, hub_of(c.services))
    return subs


def _one_slot(c: Client, names: list[bytes]) -> bool:
    """Shard channels of one command must share a slot with an owner (Redis Cluster)."""
    if not names:
        return True
    router = c.services.router
    slot = key_slot(names[0], router.nslots)
    if any(key_slot(n, router.nslots) != slot for n in names[1:]):
        c.reply(CROSSSLOT)
        return False
    if hub_of(c.services).owner(slot) is None:
        c.reply(CLUSTERDOWN)
        return False
    return True


def subscribe(c: Client, argv: list[bytes]) -> None:
    _subs(c).subscribe(CHANNELS, argv[1:])


def psubscribe(c: Client, argv: list[bytes]) -> None:
    _subs(c).subscribe(PATTERNS, argv[1:])


def ssubscribe(c: Client, argv: list[bytes]) -> None:
    if _one_slot(c, argv[1:]):
        _subs(c).subscribe(SHARDS, argv[1:])


def unsubscribe(c: Client, argv: list[bytes]) -> None:
    _subs(c).unsubscribe(CHANNELS, argv[1:])


def punsubscribe(c: Client, argv: list[bytes]) -> None:
    _subs(c).unsubscribe(PATTERNS, argv[1:])


def sunsubscribe(c: Client, argv: list[bytes]) -> None:
    if _one_slot(c, argv[1:]):
        _subs(c).unsubscribe(SHARDS, argv[1:])


def publish(c: Client, argv: list[bytes]) -> None:
    g = hub_of(c.services).publish_group(argv[1])
    if g is None:
        c.reply(CLUSTERDOWN)
    else:
        c.send(g, pack_tuple(tuple(argv)))


def spublish(c: Client, argv: list[bytes]) -> None:
    router = c.services.router
    g = hub_of(c.services).owner(key_slot(argv[1], router.nslots))
    if g is None:
        c.reply(CLUSTERDOWN)
    else:
        c.send(g, pack_tuple(tuple(argv)))


# ---------------------------------------------------------------------- PUBSUB
def merge_union(parts: list[bytes], gids: list[int]) -> bytes:
    """PUBSUB CHANNELS / SHARDCHANNELS: every group's channels, each once."""
    err = first_error(parts, gids)
    if err is not None:
        return err
    seen: dict[bytes, None] = {}
    for p in parts:
        for item in split_array(p):
            seen[item] = None
    return b"*%d\r\n%b" % (len(seen), b"".join(seen))


def merge_max(parts: list[bytes], gids: list[int]) -> bytes:
    """PUBSUB NUMPAT: each group holds every pattern of every client."""
    err = first_error(parts, gids)
    return err or encode_int(max(int(p[1:-2]) for p in parts))


def _numsub(c: Client, argv: list[bytes], shard: bool) -> None:
    names = argv[2:]
    if not names:
        c.reply(b"*0\r\n")
        return
    hub = hub_of(c.services)
    nslots = c.services.router.nslots
    by_group: dict[RoutedGroup, list[int]] = {}
    for i, n in enumerate(names):
        g = hub.owner(key_slot(n, nslots) if shard else channel_slot(n, nslots))
        if g is not None:
            by_group.setdefault(g, []).append(i)
    zero = b":0\r\n"
    if not by_group:
        c.reply(b"*%d\r\n" % (2 * len(names)) +
                b"".join(b"$%d\r\n%b\r\n%b" % (len(n), n, zero) for n in names))
        return
    groups = list(by_group)
    positions = [by_group[g] for g in groups]

    def merge(parts: list[bytes]) -> bytes:
        err = first_error(parts, [g.gid for g in groups])
        if err is not None:
            return err
        counts = [zero] * len(names)
        for idxs, part in zip(positions, parts, strict=True):
            items = split_array(part)
            for j, i in enumerate(idxs):
                counts[i] = items[2 * j + 1]
        return b"*%d\r\n" % (2 * len(names)) + b"".join(
            b"$%d\r\n%b\r\n%b" % (len(n), n, counts[i]) for i, n in enumerate(names))

    gather = Gather(c.expect(), len(groups), merge)
    lane = c.services.pool.plain_lane(c.state.lane)  # merged by the proxy: read in RESP2
    for j, g in enumerate(groups):
        sub = pack_tuple((argv[0], argv[1], *(names[i] for i in positions[j])))
        g.lanes[lane].send(sub, gather.part(j))


def pubsub(c: Client, argv: list[bytes]) -> None:
    sub = argv[1].lower()
    if sub in (b"channels", b"shardchannels"):
        broadcast(c, pack_tuple(tuple(argv)), merge_union)
    elif sub == b"numpat":
        broadcast(c, pack_tuple(tuple(argv)), merge_max)
    elif sub == b"numsub":
        _numsub(c, argv, False)
    elif sub == b"shardnumsub":
        _numsub(c, argv, True)
    elif sub == b"help":
        g = c.services.router.any_group()
        if g is None:
            c.reply(CLUSTERDOWN)
        else:
            c.send(g, pack_tuple(tuple(argv)))
    else:
        c.reply(unknown_subcommand("pubsub", argv[1]))


HANDLERS = {
    "subscribe": subscribe,
    "psubscribe": psubscribe,
    "ssubscribe": ssubscribe,
    "unsubscribe": unsubscribe,
    "punsubscribe": punsubscribe,
    "sunsubscribe": sunsubscribe,
    "publish": publish,
    "spublish": spublish,
    "pubsub": pubsub,
}
