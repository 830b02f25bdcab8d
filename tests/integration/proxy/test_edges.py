"""Bad input, edge cases and locally answered replies, tried as a new user would (issue 10).

Every reply Redis defines is compared with a direct redis-server (`direct`): same bytes for
RESP2 and RESP3 where the reply does not depend on the server (ids, addresses, times).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import redis

from slotcore.resp import frame_reply, pack_command, parse_reply
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


# ------------------------------------------------------------------------------ local replies
class Conn:
    """A raw RESP connection (after HELLO 3 when `proto` is 3): exact reply bytes."""

    def __init__(self, port: int, proto: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        if proto == 3:
            self.call("HELLO", "3")

    def send(self, *args: str | bytes) -> None:
        self.sock.sendall(pack_command(*args))

    def read(self) -> bytes:
        while True:
            if self.buf:
                end = frame_reply(self.buf, 0)
                if end > 0:
                    out, self.buf = self.buf[:end], self.buf[end:]
                    return out
            chunk = self.sock.recv(1 << 16)
            assert chunk, "connection closed"
            self.buf += chunk

    def call(self, *args: str | bytes) -> bytes:
        self.send(*args)
        return self.read()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(request: pytest.FixtureRequest, proxy: ProxyProcess, direct: RedisServer
         ) -> Iterator[tuple[Conn, Conn]]:
    """(proxy, direct redis-server) raw connections speaking the same protocol."""
    p, d = Conn(proxy.port, request.param), Conn(direct.port, request.param)
    yield p, d
    p.close()
    d.close()


SAME_BYTES = [
    ("PING",), ("PING", "hi"), ("ECHO", "x y"), ("ECHO", ""),
    ("CLIENT", "GETNAME"), ("CLIENT", "SETNAME", "n1"), ("CLIENT", "GETNAME"),
    ("CLIENT", "SETNAME", "bad name"), ("CLIENT", "GETNAME", "extra"),
    ("SELECT", "0"), ("SELECT", "x"),
    ("AUTH", "pw"), ("AUTH", "default", ""), ("AUTH", "default", "anything"),
    ("AUTH", "nosuchuser", "x"), ("AUTH", "a", "b", "c"),
    ("CLIENT", "LIST", "ID", "notanumber"), ("CLIENT", "LIST", "TYPE", "bogus"),
    ("CLIENT", "LIST", "ID"), ("CLIENT", "LIST", "TYPE"), ("CLIENT", "LIST", "bogus"),
    ("CLIENT", "LIST", "ID", "999999"),
    ("CLIENT", "KILL", "ID", "0"), ("CLIENT", "KILL", "ID", "x"),
    ("CLIENT", "KILL", "TYPE", "bogus"), ("CLIENT", "KILL", "USER", "nosuchuser"),
    ("CLIENT", "KILL", "ID", "999999"), ("CLIENT", "KILL", "ID", "999999", "SKIPME", "maybe"),
    ("CLIENT", "KILL", "9.9.9.9:1"), ("CLIENT", "KILL", "ADDR", "9.9.9.9:1", "ID"),
    ("CLIENT", "KILL", "LADDR", "9.9.9.9:1"),
    ("CLIENT", "REPLY", "bogus"), ("CLIENT", "REPLY"),
    ("CLIENT", "NO-EVICT", "on"), ("CLIENT", "NO-EVICT", "off"), ("CLIENT", "NO-EVICT", "x"),
    ("CLIENT", "GETREDIR"),
    ("COMMAND", "COUNT"), ("COMMAND", "INFO", "get", "sort", "nosuchcmd", "config|get"),
    ("COMMAND", "DOCS", "get"), ("COMMAND", "LIST", "FILTERBY", "PATTERN", "x*"),
    ("COMMAND", "LIST", "FILTERBY", "ACLCAT", "hyperloglog"),
    ("COMMAND", "LIST", "FILTERBY", "MODULE", "nosuchmodule"),
    ("COMMAND", "GETKEYS", "SET", "k", "v"), ("COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2"),
    ("COMMAND", "GETKEYS", "PING"), ("COMMAND", "GETKEYS", "NOSUCH", "k"),
    ("COMMAND", "GETKEYS", "GET"), ("COMMAND", "GETKEYS", "EVAL", "return 1", "0"),
    ("COMMAND", "GETKEYS", "OBJECT", "ENCODING", "k"), ("COMMAND", "GETKEYS", "OBJECT", "x"),
    ("COMMAND", "GETKEYS", "SORT", "k", "BY", "w_*", "STORE", "d"),
    ("COMMAND", "GETKEYSANDFLAGS", "SET", "k", "v"),
    ("COMMAND", "GETKEYSANDFLAGS", "SET", "k", "v", "GET"),
    ("COMMAND", "GETKEYSANDFLAGS", "LMOVE", "a", "b", "LEFT", "RIGHT"),
    ("COMMAND", "GETKEYSANDFLAGS", "SORT", "k", "STORE", "d"),
    ("COMMAND", "GETKEYSANDFLAGS", "BITFIELD", "k", "GET", "u8", "0"),
    ("COMMAND", "GETKEYSANDFLAGS", "BITFIELD", "k", "SET", "u8", "0", "1"),
    ("COMMAND", "GETKEYSANDFLAGS", "ZUNIONSTORE", "d", "2", "a", "b"),
    ("COMMAND", "GETKEYSANDFLAGS", "DEL", "a", "b"),
    ("COMMAND", "GETKEYSANDFLAGS", "XREAD", "STREAMS", "s1", "s2", "0", "0"),
    ("COMMAND", "GETKEYSANDFLAGS", "EVAL", "return 1", "1", "k"),
    ("COMMAND", "GETKEYSANDFLAGS", "PING"), ("COMMAND", "GETKEYSANDFLAGS"),
    ("COMMAND", "NOSUCHSUB"),
    ("CLIENT", "NOSUCHSUB"),
]


def test_local_replies_same_bytes_as_redis(pair: tuple[Conn, Conn]) -> None:
    p, d = pair
    for cmd in SAME_BYTES:
        assert p.call(*cmd) == d.call(*cmd), cmd


def test_command_list_and_count_from_the_backend(pair: tuple[Conn, Conn]) -> None:
    p, d = pair
    for cmd in (("COMMAND", "LIST"), ("COMMAND",), ("COMMAND", "INFO")):
        mine, theirs = p.call(*cmd), d.call(*cmd)
        assert mine[:12] == theirs[:12], cmd  # same count (order is Redis's hash order)
        assert len(mine) == len(theirs), cmd
    lst = parse_reply(p.call("COMMAND", "LIST"))
    assert b"config|get" in lst and b"get" in lst  # subcommands included, as Redis
    assert len(lst) > parse_reply(p.call("COMMAND", "COUNT"))


def _fields(line: bytes) -> list[bytes]:
    return [f.split(b"=", 1)[0] for f in line.strip().split(b" ")]


def test_client_info_fields_in_redis_order(pair: tuple[Conn, Conn], proxy: ProxyProcess
                                           ) -> None:
    p, d = pair
    mine, theirs = p.call("CLIENT", "INFO"), d.call("CLIENT", "INFO")
    assert mine[:1] == theirs[:1]  # "=" (verbatim, "txt:") on RESP3, "$" on RESP2
    body = mine.split(b"\r\n", 1)[1].removeprefix(b"txt:")
    ref = theirs.split(b"\r\n", 1)[1].removeprefix(b"txt:")
    names = _fields(body)
    # Redis 7.0's fields, in its order, then 7.2's lib-name/lib-ver, then the proxy's own.
    assert names[: len(_fields(ref))] == _fields(ref)
    assert names[len(_fields(ref)):] == [b"lib-name", b"lib-ver", b"pipeline", b"commands"]
    info = dict(f.split(b"=", 1) for f in body.strip().split(b" "))
    assert info[b"laddr"] == f"127.0.0.1:{proxy.port}".encode()
    assert info[b"user"] == b"default" and info[b"cmd"] == b"client|info"
    assert info[b"resp"] == (b"3" if mine[:1] == b"=" else b"2")
    assert info[b"addr"] == f"127.0.0.1:{p.sock.getsockname()[1]}".encode()
    assert info[b"fd"].isdigit() and info[b"flags"] == b"N"


def test_hello_reply_shape(pair: tuple[Conn, Conn]) -> None:
    p, d = pair
    for cmd in (("HELLO",), ("HELLO", "3"), ("HELLO", "2"), ("HELLO", "3", "AUTH", "default", "x"),
                ("HELLO", "3", "AUTH", "nosuchuser", "x"), ("HELLO", "4"), ("HELLO", "x"),
                ("HELLO", "3", "SETNAME", "bad name", "AUTH", "nosuchuser", "x"),
                ("HELLO", "2", "SETNAME", "n2"), ("HELLO", "3", "BOGUS")):
        mine, theirs = p.call(*cmd), d.call(*cmd)
        if theirs[:1] == b"-":
            assert mine == theirs, cmd
            continue
        pm, pt = parse_reply(mine), parse_reply(theirs)
        assert mine[:4] == theirs[:4], cmd  # "%7\r\n" (RESP3 map) or "*14\r\n"
        if isinstance(pm, list):
            pm, pt = dict(zip(pm[::2], pm[1::2], strict=True)), dict(
                zip(pt[::2], pt[1::2], strict=True))
        assert list(pm) == list(pt), cmd
        assert pm[b"proto"] == pt[b"proto"], cmd


def test_client_list_id_and_type(proxy: ProxyProcess) -> None:
    conns = [Conn(proxy.port, 2) for _ in range(3)]
    try:
        ids = [int(parse_reply(c.call("CLIENT", "ID"))) for c in conns]
        c0 = conns[0]
        text = parse_reply(c0.call("CLIENT", "LIST", "ID", str(ids[2]), str(ids[0]), "999999"))
        lines = text.decode().splitlines()
        assert [int(line.split()[0][3:]) for line in lines] == [ids[2], ids[0]]
        conns[1].call("SUBSCRIBE", "edges-ch")
        pubsub = parse_reply(c0.call("CLIENT", "LIST", "TYPE", "pubsub")).decode().splitlines()
        assert [int(line.split()[0][3:]) for line in pubsub] == [ids[1]]
        assert " flags=P " in pubsub[0] and " sub=1 " in pubsub[0]
        normal = parse_reply(c0.call("CLIENT", "LIST", "TYPE", "normal")).decode()
        assert f"id={ids[1]} " not in normal and f"id={ids[0]} " in normal
        assert parse_reply(c0.call("CLIENT", "LIST", "TYPE", "master")) == b""
        assert parse_reply(c0.call("CLIENT", "LIST", "TYPE", "replica")) == b""
    finally:
        for c in conns:
            c.close()


def test_client_kill_forms(proxy: ProxyProcess) -> None:
    a, b, me = Conn(proxy.port, 2), Conn(proxy.port, 2), Conn(proxy.port, 2)
    try:
        b_addr = f"127.0.0.1:{b.sock.getsockname()[1]}"
        # The legacy form: OK, and the connection is gone.
        assert me.call("CLIENT", "KILL", b_addr) == b"+OK\r\n"
        assert b.sock.recv(10) == b""
        assert me.call("CLIENT", "KILL", b_addr) == b"-ERR No such client\r\n"
        a_id = parse_reply(a.call("CLIENT", "ID"))
        laddr = f"127.0.0.1:{proxy.port}"
        # Filters combine (AND); the reply is the number killed; SKIPME yes is the default.
        assert me.call("CLIENT", "KILL", "ID", str(a_id), "ADDR", "1.2.3.4:5") == b":0\r\n"
        assert me.call("CLIENT", "KILL", "ID", str(a_id), "LADDR", laddr, "USER", "default",
                       "SKIPME", "yes") == b":1\r\n"
        assert a.sock.recv(10) == b""
        my_id = parse_reply(me.call("CLIENT", "ID"))
        assert me.call("CLIENT", "KILL", "ID", str(my_id)) == b":0\r\n"  # skipped
        assert me.call("CLIENT", "KILL", "ID", str(my_id), "SKIPME", "no") == b":1\r\n"
        assert me.sock.recv(10) == b""
    finally:
        for c in (a, b, me):
            c.close()


def test_client_reply_off_skip_on(pair: tuple[Conn, Conn]) -> None:
    # Pipelined, so that the proxy's ordering is what is tested: the bytes must be Redis's.
    script = [("SET", "rep:k", "1"), ("CLIENT", "REPLY", "SKIP"), ("GET", "rep:k"),
              ("GET", "rep:k"), ("CLIENT", "REPLY", "OFF"), ("INCR", "rep:k"), ("PING",),
              ("GET", "rep:{x}"), ("NOSUCH",), ("MGET", "rep:k", "rep:{x}"),
              ("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "ON"), ("GET", "rep:k"),
              ("CLIENT", "REPLY", "SKIP"), ("CLIENT", "REPLY", "SKIP"), ("ECHO", "a"),
              ("ECHO", "b"), ("CLIENT", "REPLY", "OFF"), ("RESET",), ("ECHO", "c")]
    outs = []
    for c in pair:
        for cmd in script:
            c.send(*cmd)
        outs.append([c.read() for _ in range(7)])
    assert outs[0] == outs[1]
    assert outs[0] == [b"+OK\r\n", b"$1\r\n1\r\n", b"+OK\r\n", b"$1\r\n2\r\n",
                       b"$1\r\nb\r\n", b"+RESET\r\n", b"$1\r\nc\r\n"]


def test_client_no_touch_and_tracking(r: redis.Redis) -> None:
    assert r.execute_command("CLIENT", "NO-TOUCH", "OFF") in (b"OK", "OK", True)
    for cmd in (("CLIENT", "NO-TOUCH", "ON"), ("CLIENT", "TRACKING", "ON"),
                ("CLIENT", "CACHING", "YES")):
        with pytest.raises(redis.ResponseError, match="not supported by the proxy"):
            r.execute_command(*cmd)


def test_resp3_getname_with_redis_py(proxy: ProxyProcess) -> None:
    c = proxy.client(protocol=3, socket_timeout=2)
    try:
        assert c.client_getname() is None  # "_", not "$-1" (which would time out)
        assert c.client_setname("me") is True
        assert c.client_getname() in ("me", b"me")
        assert c.execute_command("CLIENT", "INFO")
    finally:
        c.close()


def test_auth_default_with_a_password(backends: list[RedisServer],
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    p = ProxyProcess(tmp_path_factory.mktemp("proxy-pw"),
                     group_config(backends, password="s3cret")).start()
    try:
        c = Conn(p.port, 2)
        assert c.call("GET", "k").startswith(b"-NOAUTH")
        assert c.call("AUTH", "default", "wrong").startswith(b"-WRONGPASS")
        assert c.call("AUTH", "default", "s3cret") == b"+OK\r\n"
        info = parse_reply(c.call("CLIENT", "INFO"))
        assert b" user=default " in info
        c.close()
        c = Conn(p.port, 2)
        assert c.call("HELLO", "3", "AUTH", "default", "s3cret")[:1] == b"%"
        assert c.call("RESET") == b"+RESET\r\n"
        assert c.call("GET", "k").startswith(b"-NOAUTH")
        c.close()
    finally:
        p.stop()


# ------------------------------------------------------------------------------ big MSET values
def test_mset_of_big_values_spanning_groups(r: redis.Redis, proxy: ProxyProcess) -> None:
    """MSET values of >= 512 bytes are left in the client's read and copied once into each
    group's sub-request (compiled hot path): every value comes back byte for byte, written
    alone, pipelined behind a command off the fast path, and split over several reads."""
    sizes = [511, 512, 513, 1000, 4096, 65536, 300_000]
    kv = {f"big:{i}:{n}".encode(): bytes([33 + (i * 7 + j) % 90 for j in range(n)])
          for i, n in enumerate(sizes)}
    assert r.mset(kv) is True
    assert r.mget(list(kv)) == list(kv.values())
    p = r.pipeline(transaction=False)
    p.echo("first")  # off the fast path: the MSET behind it is served by the Python loop
    p.mset({b"again:" + k: v[::-1] for k, v in kv.items()})
    p.mget([b"again:" + k for k in kv])
    got = p.execute()
    assert got[:2] == [b"first", True]
    assert got[2] == [v[::-1] for v in kv.values()]
    # one request written a few bytes at a time: its values arrive over many reads
    payload = pack_command(b"MSET", *(x for k, v in kv.items() for x in (b"cut:" + k, v)))
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as s:
        for i in range(0, len(payload), 1500):
            s.sendall(payload[i:i + 1500])
        assert s.recv(16) == b"+OK\r\n"
    assert r.mget([b"cut:" + k for k in kv]) == list(kv.values())


def test_big_values_and_big_keys_of_single_key_and_split_commands(r: redis.Redis) -> None:
    """Arguments of >= 512 bytes after the key stay in the read on the compiled path; the keys
    of MGET/DEL/EXISTS never do. Both come back byte for byte from real servers."""
    big = bytes(range(256)) * 16  # 4 KiB, every byte value
    keys = [b"{bigkey%d}" % i + b"\xff" * 700 for i in range(6)]
    assert r.set(keys[0], big) is True
    assert r.get(keys[0]) == big
    assert r.rpush(keys[1], big, big[::-1], b"x") == 3
    assert r.lrange(keys[1], 0, -1) == [big, big[::-1], b"x"]
    assert r.hset(keys[2], big[:600], big) == 1
    assert r.hget(keys[2], big[:600]) == big
    assert r.set(keys[3], b"v", ex=100) is True
    assert r.mget([*keys[:4], keys[5]]) == [big, None, None, b"v", None]
    assert r.exists(*keys) == 4
    assert r.delete(*keys) == 4
    assert r.exists(*keys) == 0
