"""Bad input, edge cases and locally answered replies, tried as a new user would (issue 10).

Every reply Redis defines is compared with a direct redis-server (`direct`): same bytes for
RESP2 and RESP3 where the reply does not depend on the server (ids, addresses, times).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from slotcore.resp import pack_command
from tests.harness import ProxyProcess, RedisServer, group_config


def read_to_eof(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return data
        data += chunk


def half_close(port: int, payload: bytes) -> bytes:
    """Send `payload`, shutdown(SHUT_WR), and read every byte until the peer closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return read_to_eof(s)


@pytest.fixture(scope="module")
def direct(backends: list[RedisServer]) -> RedisServer:
    """A redis-server of its own, the reference for every reply (not one of the groups)."""
    return backends[0]


@pytest.fixture(scope="module")
def small_pipeline_proxy(backends: list[RedisServer], tmp_path_factory: pytest.TempPathFactory
                         ) -> Iterator[ProxyProcess]:
    p = ProxyProcess(tmp_path_factory.mktemp("proxy-small"),
                     group_config(backends, limits={"max_pipeline": 4})).start()
    yield p
    p.stop()


# ------------------------------------------------------------------------------ half-close
def test_half_close_answers_then_closes(proxy: ProxyProcess, backends: list[RedisServer]) -> None:
    payload = b"SET hc:k v\r\nGET hc:k\r\n" + pack_command(b"GET", b"hc:{x}") + b"PING\r\n"
    got = half_close(proxy.port, payload)
    assert got == b"+OK\r\n$1\r\nv\r\n$-1\r\n+PONG\r\n"
    # What a direct redis-server answers to the same bytes (printf ... | nc -N).
    assert half_close(backends[0].port, payload) == got


def test_half_close_pipeline_over_the_bound(small_pipeline_proxy: ProxyProcess) -> None:
    # 200 requests with max_pipeline 4: most wait in the backlog when the EOF arrives.
    keys = [b"hcb:%d" % i for i in range(100)]
    payload = b"".join(pack_command(b"SET", k, k) for k in keys)
    payload += b"".join(pack_command(b"GET", k) for k in keys)
    got = half_close(small_pipeline_proxy.port, payload)
    assert got == b"+OK\r\n" * 100 + b"".join(b"$%d\r\n%b\r\n" % (len(k), k) for k in keys)


def test_half_close_after_protocol_error(proxy: ProxyProcess, backends: list[RedisServer]
                                         ) -> None:
    payload = b"PING\r\nECHO hi\r\n*x\r\nPING\r\n"
    got = half_close(proxy.port, payload)
    assert got == half_close(backends[0].port, payload)
    assert got == b"+PONG\r\n$2\r\nhi\r\n-ERR Protocol error: invalid multibulk length\r\n"


def test_half_close_after_quit_and_with_nothing_sent(proxy: ProxyProcess) -> None:
    assert half_close(proxy.port, b"PING\r\nQUIT\r\nPING\r\n") == b"+PONG\r\n+OK\r\n"
    assert half_close(proxy.port, b"") == b""
    assert half_close(proxy.port, b"PING\r\nGET hc:partial") == b"+PONG\r\n"


def test_half_close_small_pipeline_protocol_error(small_pipeline_proxy: ProxyProcess) -> None:
    payload = b"PING\r\n" * 20 + b"*x\r\n"
    got = half_close(small_pipeline_proxy.port, payload)
    assert got == b"+PONG\r\n" * 20 + b"-ERR Protocol error: invalid multibulk length\r\n"


# ------------------------------------------------------------------------------ inline
def test_long_inline_line_with_its_newline(proxy: ProxyProcess, backends: list[RedisServer]
                                           ) -> None:
    value = b"x" * (70 * 1000)
    payload = b"SET inl:k " + value + b"\r\nSTRLEN inl:k\r\n"
    got = half_close(proxy.port, payload)
    assert got == b"+OK\r\n:70000\r\n"
    assert half_close(backends[1].port, payload) == got  # Redis serves it too
    assert redis.Redis(port=proxy.port).get("inl:k") == value


def test_incomplete_inline_line_over_the_limit(proxy: ProxyProcess) -> None:
    c = proxy.raw()
    try:
        c.send(b"PING\r\nSET inl:big " + b"y" * (70 * 1000))  # no newline: Redis refuses too
        c.recv_until(lambda b: b.count(b"\r\n") >= 2)
        assert c.buf == b"+PONG\r\n-ERR Protocol error: too big inline request\r\n"
        assert c.closed_by_peer()
    finally:
        c.close()


# ------------------------------------------------------------------------------ SORT BY / GET
SORT_BY_DENIED = ("BY option of SORT denied in Cluster mode when keys formed by the pattern may "
                  "be in different slots.")
SORT_GET_DENIED = ("GET option of SORT denied in Cluster mode when keys formed by the pattern "
                   "may be in different slots.")


def _sort_data(c: redis.Redis, tag: str) -> None:
    c.delete(f"{tag}list")
    c.rpush(f"{tag}list", 3, 1, 2)
    for i, w in ((1, 30), (2, 10), (3, 20)):
        c.set(f"{tag}w_{i}", w)
        c.hset(f"{tag}h_{i}", mapping={"w": -w, "name": f"n{i}"})
        c.set(f"{tag}n_{i}", f"name{i}")


@pytest.mark.parametrize("cmd", ["SORT", "SORT_RO"])
def test_sort_pattern_pinned_by_hash_tag_matches_direct(
        r: redis.Redis, direct: RedisServer, cmd: str) -> None:
    d = redis.Redis(port=direct.port, protocol=r.get_connection_kwargs().get("protocol", 2))
    for c in (r, d):
        _sort_data(c, "{u}")
    for args in (
        ["{u}list", "BY", "{u}w_*"],
        ["{u}list", "BY", "{u}w_*", "GET", "{u}n_*", "GET", "#"],
        ["{u}list", "BY", "{u}h_*->w", "GET", "{u}h_*->name", "DESC", "LIMIT", "0", "2"],
        ["{u}list", "BY", "nosort", "GET", "#"],
        ["{u}list", "BY", "w_no_star"],  # no "*": no sort, no key read
        ["{u}list", "GET", "#", "ALPHA"],
        ["{u}list", "GET", "{u}missing_*"],
    ):
        assert r.execute_command(cmd, *args) == d.execute_command(cmd, *args), args
    d.close()


@pytest.mark.parametrize("cmd", ["SORT", "SORT_RO"])
def test_sort_pattern_outside_the_slot_refused(r: redis.Redis, cmd: str) -> None:
    _sort_data(r, "{u}")
    r.rpush("plainlist", 3, 1, 2)
    for args, err in (
        (["plainlist", "BY", "w_*"], SORT_BY_DENIED),
        (["{u}list", "BY", "w_*"], SORT_BY_DENIED),
        (["{u}list", "BY", "{v}w_*"], SORT_BY_DENIED),
        (["{u}list", "BY", "w_*{u}"], SORT_BY_DENIED),  # "*" before the tag: any slot
        (["{u}list", "GET", "n_*"], SORT_GET_DENIED),
        (["{u}list", "BY", "{u}w_*", "GET", "#", "GET", "{x}n_*"], SORT_GET_DENIED),
        (["{u}list", "GET", "constant"], SORT_GET_DENIED),  # hashed whole, as Redis does
        (["plainlist", "BY", "w_*", "BADOPTION"], SORT_BY_DENIED),  # fires as it is parsed
    ):
        with pytest.raises(redis.ResponseError) as e:
            r.execute_command(cmd, *args)
        assert str(e.value) == err, args
    # A syntax error before the pattern is still Redis's own.
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command(cmd, "plainlist", "BADOPTION", "BY", "w_*")
    assert r.execute_command(cmd, "plainlist") == [b"1", b"2", b"3"]
    assert r.execute_command(cmd, "plainlist", "BY", "nosort") == [b"3", b"1", b"2"]


def test_sort_store_and_transactions(r: redis.Redis) -> None:
    _sort_data(r, "{u}")
    assert r.sort("{u}list", by="{u}w_*", store="{u}dst") == 3
    assert r.lrange("{u}dst", 0, -1) == [b"2", b"3", b"1"]
    with pytest.raises(redis.ResponseError, match="hash to the same slot"):  # CROSSSLOT
        r.sort("{u}list", store="{v}dst")
    p = r.pipeline(transaction=True)
    p.sort("{u}list", by="w_*")
    with pytest.raises(redis.ResponseError) as e:
        p.execute()
    assert "EXECABORT" in str(e.value) or SORT_BY_DENIED in str(e.value)
    p = r.pipeline(transaction=True)
    p.sort("{u}list", by="{u}w_*", get="{u}n_*")
    assert p.execute() == [[b"name2", b"name3", b"name1"]]


def test_copy_to_another_db_refused(r: redis.Redis) -> None:
    r.set("{c}a", "1")
    with pytest.raises(redis.ResponseError) as e:
        r.copy("{c}a", "{c}b", destination_db=1)
    assert str(e.value) == "Copying to another database is not allowed in cluster mode"
    assert r.copy("{c}a", "{c}b", destination_db=0)
    assert r.get("{c}b") == b"1"
