"""Connection behaviour: AUTH, limits, backpressure, backend failure and recovery, shutdown."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.harness import ProxyProcess, RedisServer, group_config, python_module, until

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_backends(tmp_path: Path) -> Iterator[list[RedisServer]]:
    servers = [RedisServer(tmp_path / f"g{i}").start() for i in range(3)]
    yield servers
    for s in servers:
        s.stop()


def test_auth_required(backends: list[RedisServer], tmp_path: Path) -> None:
    p = ProxyProcess(tmp_path, group_config(backends, password="s3cret", username="app")).start()
    # redis-py retries a refused AUTH (a ConnectionError) with backoff, seconds per client:
    # the refusals here are the point, so they are not retried.
    once = {"retry": Retry(NoBackoff(), 0)}
    try:
        c = p.client(protocol=2, **once)
        with pytest.raises(redis.AuthenticationError):
            c.get("x")
        with pytest.raises(redis.AuthenticationError, match="Authentication required"):
            c.execute_command("PING")
        # a RESP3 client opens with HELLO 3, refused the way Redis refuses it
        with pytest.raises(redis.AuthenticationError, match="HELLO must be called with the"):
            p.client(protocol=3, **once).ping()
        assert p.client(protocol=3, password="s3cret").ping() is True
        raw = p.raw()
        raw.send(b"GET x\r\nAUTH wrong\r\nAUTH s3cret\r\nGET x\r\n")
        assert raw.read_lines(4) == [
            b"-NOAUTH Authentication required.",
            b"-WRONGPASS invalid username-password pair or user is disabled.",
            b"+OK",
            b"$-1",
        ]
        raw.send(b"AUTH app s3cret\r\nAUTH other s3cret\r\n")
        assert raw.read_lines(2)[0] == b"+OK"
        ok = p.client(password="s3cret")
        assert ok.set("authed", "1") is True
        ok2 = p.client(username="app", password="s3cret")
        assert ok2.get("authed") == b"1"
        with pytest.raises(redis.AuthenticationError):
            p.client(username="nobody", password="s3cret", **once).ping()
    finally:
        p.stop()


def test_auth_without_password_configured(proxy: ProxyProcess) -> None:
    raw = proxy.raw()
    raw.send(b"AUTH x\r\n")
    assert raw.read_lines(1)[0].startswith(b"-ERR AUTH <password> called without any password")


def test_max_clients(backends: list[RedisServer], tmp_path: Path) -> None:
    p = ProxyProcess(tmp_path, group_config(backends, limits={"max_clients": 3})).start()
    try:
        clients = [p.raw() for _ in range(3)]
        for c in clients:
            c.send(b"PING\r\n")
            assert c.read_lines(1) == [b"+PONG"]
        extra = p.raw()
        extra.send(b"PING\r\n")
        assert extra.read_lines(1) == [b"-ERR max number of clients reached"]
        assert extra.closed_by_peer()
        clients[0].close()
        time.sleep(0.2)
        again = p.raw()
        again.send(b"PING\r\n")
        assert again.read_lines(1) == [b"+PONG"]
    finally:
        p.stop()


def test_idle_timeout(backends: list[RedisServer], tmp_path: Path) -> None:
    p = ProxyProcess(tmp_path, group_config(backends, idle_timeout=1)).start()
    try:
        raw = p.raw()
        raw.send(b"PING\r\n")
        assert raw.read_lines(1) == [b"+PONG"]
        addr = "{}:{}".format(*raw.sock.getsockname()[:2])
        assert raw.closed_by_peer(timeout=5)
        # Closed by the idle sweep once the proxy's own clock saw idle_timeout of silence.
        logged = until(lambda: re.search(rf"client {re.escape(addr)} idle for (\d+)s; closing",
                                         p.log()), 5, "the idle close in the proxy log")
        assert int(logged.group(1)) >= 1
        busy = p.client()
        for _ in range(6):  # active clients are never closed
            assert busy.ping()
            time.sleep(0.3)
    finally:
        p.stop()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_pipeline_backpressure_bounds_memory(backends: list[RedisServer], tmp_path: Path) -> None:
    """A client pipelines 600 GETs of a 512 KiB value (300 MB of replies) in one write and
    does not read: the proxy dispatches at most max_pipeline at a time and stops reading, so
    its memory stays bounded; once the client reads, every reply arrives, in order."""
    p = ProxyProcess(tmp_path, group_config(backends, limits={"max_pipeline": 16})).start()
    try:
        c = p.client()
        value = b"v" * (512 * 1024)
        assert c.set("bp:big", value)
        assert p.process is not None
        base = _rss_mb(p.process.pid)
        n = 600
        sock = socket.create_connection((p.host, p.port))
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$6\r\nbp:big\r\n" * n + b"PING\r\n")
        time.sleep(2.0)
        grown = _rss_mb(p.process.pid) - base
        assert grown < 100, f"proxy RSS grew {grown:.0f} MB for a client that reads nothing"
        assert c.ping() is True  # other clients are served meanwhile
        sock.settimeout(20)
        expected = (b"$524288\r\n" + value + b"\r\n") * n + b"+PONG\r\n"
        got = bytearray()
        while len(got) < len(expected):
            chunk = sock.recv(1 << 20)
            assert chunk, "proxy closed the connection"
            got += chunk
        assert bytes(got) == expected
        sock.close()
    finally:
        p.stop()


def test_client_disconnecting_mid_pipeline_keeps_backends_in_step(proxy: ProxyProcess) -> None:
    c = proxy.client()
    c.set("step", "0")
    for _ in range(20):
        sock = socket.create_connection((proxy.host, proxy.port))
        sock.sendall(b"".join(b"*2\r\n$4\r\nINCR\r\n$4\r\nstep\r\n" for _ in range(500)))
        sock.close()  # gone before reading any reply
    # every reply after this is for the request it answers
    for i in range(200):
        assert c.echo(f"e{i}") == f"e{i}".encode()
        assert c.set(f"s{i}", i) is True
        assert c.get(f"s{i}") == str(i).encode()
    assert 0 < int(c.get("step")) <= 10_000


def test_backend_killed_and_restarted_under_traffic(
    fresh_backends: list[RedisServer], tmp_path: Path
) -> None:
    p = ProxyProcess(tmp_path, group_config(fresh_backends)).start()
    try:
        c = p.client()
        victim = fresh_backends[1]
        # keys by group
        keys_by_group: dict[int, list[str]] = {0: [], 1: [], 2: []}
        from slotcore.keyslot import key_slot

        i = 0
        while min(len(v) for v in keys_by_group.values()) < 20:
            k = f"kt:{i}"
            idx = next(j for j in range(3)
                       if 16384 * j // 3 <= key_slot(k.encode()) < 16384 * (j + 1) // 3)
            keys_by_group[idx].append(k)
            i += 1
        errors: list[str] = []
        stop = threading.Event()
        ok_other = [0]

        def traffic() -> None:
            tc = p.client(socket_timeout=5)
            while not stop.is_set():
                for k in keys_by_group[0] + keys_by_group[2]:
                    try:
                        tc.set(k, "v")
                        ok_other[0] += 1
                    except redis.RedisError as e:
                        errors.append(str(e))
        t = threading.Thread(target=traffic)
        t.start()
        time.sleep(0.3)
        port = victim.port
        victim.kill()
        time.sleep(0.3)
        # requests for the dead group fail fast with a clear error
        with pytest.raises(redis.ResponseError, match=rf"backend 127.0.0.1:{port} ") as err:
            c.set(keys_by_group[1][0], "x")
        # fast: the proxy knows the backend is gone; the request did not wait out a timeout
        assert "timed out" not in str(err.value)
        # other groups are unaffected meanwhile
        before = ok_other[0]
        until(lambda: ok_other[0] > before + 50, 10, "traffic on the other groups")
        # bring it back on the same port: traffic resumes without a proxy restart
        fresh_backends[1] = RedisServer(victim.workdir, port=port).start()  # fixture stops it
        deadline = time.monotonic() + 10
        while True:
            try:
                assert c.set(keys_by_group[1][0], "back") is True
                break
            except redis.ResponseError:
                assert time.monotonic() < deadline, "group did not come back"
                time.sleep(0.1)
        assert c.get(keys_by_group[1][0]) == b"back"
        stop.set()
        t.join()
        assert errors == [], errors[:5]
    finally:
        p.stop()


def test_graceful_shutdown_answers_in_flight(backends: list[RedisServer], tmp_path: Path) -> None:
    p = ProxyProcess(tmp_path, group_config(backends)).start()
    raw = p.raw()
    # a slow command in flight (DEBUG is refused, so use a slow Lua script on one key)
    raw.send(b"EVAL \"local i=0 while i<3000000 do i=i+1 end return i\" 1 slowk\r\n")
    time.sleep(0.05)
    assert p.process is not None
    p.process.signal(signal.SIGTERM)
    assert raw.read_lines(1, timeout=10) == [b":3000000"]
    assert raw.closed_by_peer()
    assert p.process.proc.wait(10) == 0
    # new connections are refused once it is gone
    with pytest.raises(OSError):
        socket.create_connection((p.host, p.port), timeout=1)
    p.stop()


def test_bad_config_gives_one_line_error(tmp_path: Path) -> None:
    import subprocess

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("listen: 127.0.0.1:1\ngroups:\n  1: {master: 127.0.0.1:6379}\n"
                   "limits:\n  max_pipline: 5\n")
    out = subprocess.run(python_module("proxy", "-c", str(cfg)), capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "slotproxy: config error: limits.max_pipline: unknown field (known: client_output_buffer, "
        "max_bulk_len, max_clients, max_inline_len, max_multibulk_len, max_pipeline, "
        "max_query_buffer, max_queued, max_queued_bytes)"]
    cfg.write_text("groups:\n  1: {master: nowhere}\nslots: 100\n")
    out = subprocess.run(python_module("proxy", "-c", str(cfg)), capture_output=True, text=True,
                         timeout=20)
    assert out.returncode == 2 and "slots: must be 16384 or 1024" in out.stderr
