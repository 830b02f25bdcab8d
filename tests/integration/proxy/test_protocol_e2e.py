"""Malformed input, inline commands and limits against a real proxy process, over raw sockets.

A protocol violation gets `-ERR Protocol error: ...` and that connection is closed, as Redis
does; the proxy and every other client carry on. Run against every request parser: the
compiled hot path, and with it off the hiredis-assisted and the pure-Python one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.harness import ProxyProcess, RedisServer, group_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["compiled", "hiredis", "python"])
def pproxy(request: pytest.FixtureRequest, backends: list[RedisServer],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    cfg = group_config(backends, limits={"max_bulk_len": 1_000_000, "max_multibulk_len": 1000},
                       use_hiredis=request.param == "hiredis",
                       use_accelerator=request.param == "compiled")
    p = ProxyProcess(tmp_path_factory.mktemp(f"pp-{request.param}"), cfg).start()
    yield p
    p.stop()


@pytest.fixture
def bystander(pproxy: ProxyProcess) -> Iterator[redis.Redis]:
    """A well-behaved client that must be unaffected by the misbehaving one."""
    c = pproxy.client()
    c.set("bystander", "ok")
    yield c
    assert c.get("bystander") == b"ok"
    assert c.ping() is True
    c.close()


def test_inline_commands(pproxy: ProxyProcess) -> None:
    raw = pproxy.raw()
    raw.send(b"SET inl \"hello world\"\r\n\r\nGET inl\n  PING  \r\n")
    assert raw.read_lines(4) == [b"+OK", b"$11", b"hello world", b"+PONG"]
    # inline mixed with multibulk in one write
    raw.send(b"*2\r\n$3\r\nGET\r\n$3\r\ninl\r\nECHO 'a b'\r\n")
    assert raw.read_lines(4) == [b"$11", b"hello world", b"$3", b"a b"]
    raw.close()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"*1\r\n$99999999999\r\n", b"-ERR Protocol error: invalid bulk length"),
        (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length"),
        (b"*2000\r\n", b"-ERR Protocol error: invalid multibulk length"),
        (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length"),
        (b"*1\r\n:5\r\n", b"-ERR Protocol error: expected '$', got ':'"),
        (b"*2\r\n$3\r\nGET\r\n+x\r\n", b"-ERR Protocol error: expected '$', got '+'"),
        (b"SET a \"unterminated\r\n", b"-ERR Protocol error: unbalanced quotes in request"),
        (b"*1\r\n$1000001\r\n", b"-ERR Protocol error: invalid bulk length"),
    ],
)
def test_protocol_errors_close_only_that_connection(
    pproxy: ProxyProcess, bystander: redis.Redis, payload: bytes, message: bytes
) -> None:
    raw = pproxy.raw()
    # a good command first: it must still be answered, before the error
    raw.send(b"PING\r\n" + payload)
    lines = raw.read_lines(2)
    assert lines == [b"+PONG", message]
    assert raw.closed_by_peer(), "connection must be closed after a protocol error"
    raw.close()


def test_garbage_and_huge_inline(pproxy: ProxyProcess, bystander: redis.Redis) -> None:
    raw = pproxy.raw()
    raw.send(b"\xff\xfe garbage \x01\r\n")
    line = raw.read_lines(1)[0]
    assert line.startswith(b"-ERR unknown command")  # inline garbage is just an unknown command
    raw.send(b"x" * (70 * 1024))  # no newline: over the 64 KiB inline limit
    assert raw.read_lines(1)[0] == b"-ERR Protocol error: too big inline request"
    assert raw.closed_by_peer()


def test_truncated_frames_then_disconnect(pproxy: ProxyProcess, bystander: redis.Redis) -> None:
    for cut in (b"*3\r\n$3\r\nSET\r\n$1\r\nk", b"*3\r\n$3", b"*", b"$"):
        raw = pproxy.raw()
        raw.send(cut)
        raw.close()
    raw = pproxy.raw()
    raw.send(b"*3\r\n$3\r\nSET\r\n$5\r\ntrunc\r\n$5\r\nva")  # waits for the rest
    raw.send(b"lue\r\n*2\r\n$3\r\nGET\r\n$5\r\ntrunc\r\n")
    assert raw.read_lines(3) == [b"+OK", b"$5", b"value"]
    raw.close()


def test_large_value_round_trip(pproxy: ProxyProcess) -> None:
    c = pproxy.client()
    big = bytes(range(256)) * 3900  # ~1 MB, binary, under the 1,000,000-byte limit
    assert c.set("big", big)
    assert c.get("big") == big
    with pytest.raises(redis.ResponseError, match="Protocol error: invalid bulk length"):
        c.set("toobig", b"x" * 1_000_001)  # the proxy answers with an error, then closes
    c2 = pproxy.client()
    assert c2.get("big") == big
