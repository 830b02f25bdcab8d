"""INFO merging of the keyspace-wide sections (proxy/fanout/merge.py), pure."""

from __future__ import annotations

from proxy.fanout.merge import merge_info, parse_info
from slotcore.resp import encode_bulk, parse_reply


def info(text: str) -> bytes:
    return encode_bulk(text.replace("\n", "\r\n").encode())


def test_commandstats_errorstats_summed_and_overrides() -> None:
    a = info("# Commandstats\ncmdstat_set:calls=3,usec=30,usec_per_call=10.00,rejected_calls=0,"
             "failed_calls=1\n\n# Errorstats\nerrorstat_ERR:count=2\n\n# Clients\n"
             "connected_clients:7\nblocked_clients:3\n\n# Cluster\ncluster_enabled:0\n")
    b = info("# Commandstats\ncmdstat_set:calls=1,usec=2,usec_per_call=2.00,rejected_calls=1,"
             "failed_calls=0\ncmdstat_get:calls=5,usec=5,usec_per_call=1.00,rejected_calls=0,"
             "failed_calls=0\n\n# Errorstats\nerrorstat_ERR:count=1\nerrorstat_WRONGTYPE:count=4"
             "\n\n# Clients\nconnected_clients:9\nblocked_clients:0\n\n# Cluster\n"
             "cluster_enabled:0\n")
    raw = merge_info([a, b], ["everything"], "# Proxy\r\nproxy_version:x\r\n", 2, 1, 10,
                     blocked=1, overrides={"Cluster": {"cluster_enabled": "1"}})
    text = parse_reply(raw)
    assert isinstance(text, bytes)
    got = parse_info(text.decode())
    assert got["Commandstats"]["cmdstat_set"] == (
        "calls=4,usec=32,usec_per_call=8.00,rejected_calls=1,failed_calls=1")
    assert got["Commandstats"]["cmdstat_get"].startswith("calls=5,usec=5,")
    assert got["Errorstats"] == {"errorstat_ERR": "count=3", "errorstat_WRONGTYPE": "count=4"}
    assert got["Clients"]["connected_clients"] == "2"
    assert got["Clients"]["blocked_clients"] == "1"
    assert got["Cluster"]["cluster_enabled"] == "1"
    assert "Proxy" in got
