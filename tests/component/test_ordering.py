"""Reply order: a pipeline spread over groups whose backends answer at different speeds comes
back in request order (Codis's test: backend request i is answered "i")."""

from __future__ import annotations

import random

from .conftest import Proxy, settle


def owner_seq(proxy: Proxy, argv: list[bytes]) -> tuple[int, int]:
    """(gid, sequence number) of the one request equal to `argv` that a backend received."""
    hits = [(gid, seq) for gid in proxy.groups for seq in proxy.backend(gid).seq_of(*argv)]
    assert len(hits) == 1, f"{argv!r} reached the backends {len(hits)} times"
    return hits[0]


async def test_pipeline_of_1000_over_three_slow_groups_keeps_request_order(
        proxy: Proxy) -> None:
    for b, delay in zip(proxy.backends, (0.0, 0.002, 0.005), strict=True):
        b.delay = delay
    keys = [b"key:%d" % i for i in range(1000)]
    assert {proxy.gid_of(k) for k in keys} == {1, 2, 3}
    c = proxy.client()
    # One burst, cut into uneven reads as a socket would deliver it.
    stream = b"".join(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(k), k) for k in keys)
    rnd = random.Random(7)
    pos = 0
    while pos < len(stream):
        step = rnd.randint(1, 4000)
        c.feed(stream[pos:pos + step])
        pos += step
    got = await c.take(1000)
    last_seq = dict.fromkeys(proxy.groups, 0)
    for k, reply in zip(keys, got, strict=True):
        gid, seq = owner_seq(proxy, [b"GET", k])
        assert gid == proxy.gid_of(k)
        # Each reply is what the key's backend said for that very request ...
        assert reply == str(seq).encode(), k
        # ... and each backend saw this client's requests in the client's order.
        assert seq > last_seq[gid]
        last_seq[gid] = seq
    # The slow backends' replies were not all in before the fast one answered (the test is
    # about interleaving, not about one reply at a time).
    assert proxy.backend(1).answered > 0
    assert not c.conn.fifo


async def test_mixed_pipeline_of_fast_path_split_and_local_commands_stays_in_order(
        proxy: Proxy) -> None:
    proxy.backend(2).delay = 0.003
    proxy.backend(3).delay = 0.001
    c = proxy.client()
    cmds: list[tuple[bytes, ...]] = []
    for r in range(40):
        k1, k2, k3 = (proxy.keys_on(g, 1, b"r%d:g%d:" % (r, g))[0] for g in (1, 2, 3))
        cmds += [
            (b"GET", k2),
            (b"MGET", k1, k2, k3),
            (b"PING",),
            (b"MSET", k3, b"v", k1, b"w"),
            (b"SET", k1, b"x"),
            (b"ECHO", b"e%d" % r),
            (b"DEL", k1, k2, k3, b"{%s}x" % k1),
            (b"MGET", k3, b"{%s}y" % k3),  # one group: forwarded unchanged
            (b"EXISTS", k2, k3),
            (b"PING", b"p%d" % r),
        ]
    got = await c.call(*cmds)
    for cmd, reply in zip(cmds, got, strict=True):
        name = cmd[0]
        if name == b"GET" or name == b"SET":
            _, seq = owner_seq(proxy, list(cmd))
            assert reply == str(seq).encode(), cmd
        elif name == b"MGET":
            keys = cmd[1:]
            assert len(reply) == len(keys), cmd
            for k, v in zip(keys, reply, strict=True):
                gid = proxy.gid_of(k)
                # The sub-request that carried k: "MGET <k and its group-mates, in order>".
                gid_sub, seq = owner_seq(proxy, [b"MGET", *(x for x in keys
                                                              if proxy.gid_of(x) == gid)])
                assert gid_sub == gid
                assert v == b"%s@%d" % (k, seq), (cmd, k)
        elif name == b"MSET":
            assert reply == b"OK"
        elif name in (b"DEL", b"EXISTS"):
            assert reply == len(cmd) - 1
        elif name == b"ECHO":
            assert reply == cmd[1]
        else:
            assert reply == (b"PONG" if len(cmd) == 1 else cmd[1])
    # The split commands really were split: MGET over three groups is three sub-requests.
    assert all(len(a) == 2 for a in proxy.backend(1).commands(b"MGET"))
    # Local commands never reach a backend.
    assert not any(b.commands(b"ECHO") for b in proxy.backends)
    # Every key a backend saw belongs to its group.
    for gid in proxy.groups:
        for argv in proxy.backend(gid).commands():
            keys = argv[1::2] if argv[0] == b"MSET" else argv[1:2] if argv[0] == b"SET" \
                else argv[1:]
            if argv[0] in (b"GET", b"SET", b"MGET", b"MSET", b"DEL", b"EXISTS"):
                assert {proxy.gid_of(k) for k in keys} == {gid}, argv
    await settle()
    assert len(c.replies) == len(cmds)  # nothing extra was written
