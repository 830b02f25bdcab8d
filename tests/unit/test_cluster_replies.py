"""The masquerade's pure parts: the proxies' list contract (slotcore.members, SlotMap.proxies)
and the CLUSTER reply builders (proxy.handlers.cluster), RESP2 and RESP3, without sockets."""

from __future__ import annotations

import hashlib
import itertools

from proxy.handlers import cluster as cl
from slotcore.members import ProxyAddr, canonical, digest, node_id, spread
from slotcore.resp import parse_reply
from slotcore.slotmap import GroupSpec, SlotMap

ME = ProxyAddr("p-b", "10.0.0.2:19000")
OTHERS = (ProxyAddr("p-a", "10.0.0.1:19000"), ProxyAddr("p-c", "proxy-c.example:19001"))


def view(served: list[bool] | None = None, epoch: int = 7) -> cl.ClusterView:
    return cl.build_view(OTHERS, ME, epoch, served)


def test_node_ids_are_sha1_of_the_proxy_id() -> None:
    assert node_id("p-a") == hashlib.sha1(b"p-a").hexdigest()
    assert len(node_id("x")) == 40


def test_spread_is_even_contiguous_and_covers_everything() -> None:
    for n in (1, 2, 3, 7):
        parts = spread(n)
        assert parts[0][0] == 0 and parts[-1][1] == 16383
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(parts))
        sizes = [hi - lo + 1 for lo, hi in parts]
        assert max(sizes) - min(sizes) <= 1


def test_digest_ignores_order_and_sees_changes() -> None:
    a = [ProxyAddr("x", "h:1"), ProxyAddr("y", "h:2")]
    assert digest(a) == digest(list(reversed(a)))
    assert digest(a) != digest(a[:1])
    assert digest(a) != digest([ProxyAddr("x", "h:1"), ProxyAddr("y", "h:3")])
    assert canonical(a[::-1]) == tuple(a)


def test_slot_map_json_carries_the_proxies_and_stays_compatible() -> None:
    groups = {1: GroupSpec(1, "127.0.0.1:6379")}
    sm = SlotMap.even(1024, groups, epoch=3)
    assert "proxies" not in sm.to_json()  # an old proxy sees exactly what it saw before
    data = sm.to_json() | {"proxies": [p.to_json() for p in OTHERS]}
    back = SlotMap.from_json(data)
    assert back.proxies == OTHERS
    assert back == sm  # the proxies are not part of routing
    assert SlotMap.from_json(back.to_json()).proxies == OTHERS


def test_view_orders_nodes_by_id_and_marks_myself() -> None:
    v = view()
    assert [n.id for n in v.nodes] == [node_id(i) for i in ("p-a", "p-b", "p-c")]
    assert [n.myself for n in v.nodes] == [False, True, False]
    assert [n.slots for n in v.nodes] == [((0, 5460),), ((5461, 10921),), ((10922, 16383),)]
    assert v.assigned == 16384
    # standalone: only myself, owning everything
    alone = cl.build_view((), ME, 1, None)
    assert [(n.host, n.port, n.slots, n.myself) for n in alone.nodes] == [
        ("10.0.0.2", 19000, ((0, 16383),), True)]


def test_unserved_slots_are_left_out() -> None:
    served = [True] * 16384
    for s in range(100, 200):
        served[s] = False
    v = view(served)
    assert v.nodes[0].slots == ((0, 99), (200, 5460))
    assert v.assigned == 16284
    assert "cluster_state:fail" in cl.info_text(v)


def test_served_slots_maps_1024_proxy_slots_onto_16384() -> None:
    groups = {1: GroupSpec(1, "127.0.0.1:6379")}
    sm = SlotMap.from_ranges(1024, groups, [(0, 511, 1)], epoch=1)
    served = cl.served_slots(sm)
    assert served is not None
    assert all(served[s] == ((s % 1024) < 512) for s in range(16384))
    assert cl.served_slots(SlotMap.even(1024, groups)) is None
    assert cl.served_slots(None) == [False] * 16384


def test_cluster_slots_resp2_and_resp3() -> None:
    v = view()
    two = parse_reply(cl.cluster_slots(v, 2))
    assert two[0] == [0, 5460, [b"10.0.0.1", 19000, node_id("p-a").encode(), []]]
    assert [s[:2] for s in two] == [[0, 5460], [5461, 10921], [10922, 16383]]
    three = cl.cluster_slots(v, 3)
    assert b"%0\r\n" in three and parse_reply(three)[2][2][0] == b"proxy-c.example"


def test_cluster_shards_resp2_is_flat_resp3_is_maps() -> None:
    v = view()
    two = parse_reply(cl.cluster_shards(v, 2))
    assert two[0][:2] == [b"slots", [0, 5460]] and two[0][2] == b"nodes"
    node = two[0][3][0]
    assert node[0::2] == [b"id", b"port", b"ip", b"endpoint", b"role", b"replication-offset",
                          b"health"]
    three = parse_reply(cl.cluster_shards(v, 3))
    assert cl.cluster_shards(v, 3).startswith(b"*3\r\n%2\r\n")
    host_node = three[2][b"nodes"][0]
    assert host_node[b"hostname"] == b"proxy-c.example"
    assert host_node[b"port"] == 19001 and host_node[b"health"] == b"online"


def test_cluster_nodes_lines() -> None:
    v = view(epoch=9)
    text = cl.nodes_text(v, now_ms=1234)
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 4
    assert lines[0] == f"{node_id('p-a')} 10.0.0.1:19000@29000 master - 0 1234 9 connected 0-5460"
    assert lines[1] == (f"{node_id('p-b')} 10.0.0.2:19000@29000 myself,master - 0 0 9 "
                        "connected 5461-10921")
    assert lines[2].split()[1] == "proxy-c.example:19001@29001,proxy-c.example"
    assert cl.cluster_nodes(v, 3, 1234).startswith(b"=%d\r\ntxt:" % (len(text) + 4))
    assert cl.cluster_nodes(v, 2, 1234).startswith(b"$%d\r\n" % len(text))


def test_single_slots_and_wildcard_hosts() -> None:
    served = [False] * 16384
    served[5] = True
    served[7] = served[8] = True
    me = ProxyAddr("me", "0.0.0.0:19000")
    v = cl.build_view((), me, 1, served)
    assert v.nodes[0].host == ""
    assert cl.nodes_text(v) == (f"{node_id('me')} :19000@29000 myself,master - 0 0 1 "
                                "connected 5 7-8\n")
    assert parse_reply(cl.cluster_slots(v))[0][2][0] == b""


def test_cluster_info_fields() -> None:
    text = cl.info_text(view(epoch=4))
    fields = dict(line.split(":") for line in text.split("\r\n") if line)
    assert fields["cluster_state"] == "ok"
    assert fields["cluster_known_nodes"] == "3" and fields["cluster_size"] == "3"
    assert fields["cluster_current_epoch"] == fields["cluster_my_epoch"] == "4"
    assert list(fields)[-1] == "total_cluster_links_buffer_limit_exceeded"
    assert cl.cluster_info(view(), 3).startswith(b"=")
