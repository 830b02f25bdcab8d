"""The builtin command table against a live redis-server: COMMAND, and COMMAND GETKEYS as the
oracle for every key-position case of tests/unit/test_commands.py."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest

from tests.harness import RedisServer
from tests.unit import test_commands
from tests.unit.test_commands import (
    BUILTIN_PATH,
    KEY_CASES,
    REPO,
    A,
    CommandTable,
    keys_of,
)

table = test_commands.table  # the fixture: the builtin command table


class _Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = hiredis.Reader()

    def call(self, *args: bytes) -> Any:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("closed")
            self.reader.feed(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server.port
    finally:
        server.stop()


# Where we deliberately differ from Redis 7.0's COMMAND GETKEYS (and what it answers): with no
# source, PFMERGE's source spec is out of range, so Redis discards *all* specs and finds no key;
# we keep the keys of the specs that do apply (Redis's GET_KEYSPEC_RETURN_PARTIAL), so the
# command is routed to its destination's group.
GETKEYS_DIFFERS: dict[str, list[str]] = {"PFMERGE dest": []}


@pytest.mark.integration
def test_builtin_matches_live_server(table: CommandTable, redis_port: int) -> None:
    conn = _Conn(redis_port)
    try:
        reply = conn.call(b"COMMAND")
        version = conn.call(b"INFO", b"server")
        # COMMAND GETKEYS is Redis's own key extraction: the oracle for every KEY_CASES line.
        getkeys = {}
        for cmd, _ in KEY_CASES:
            r = conn.call(b"COMMAND", b"GETKEYS", *A(cmd))
            # An error means "no keys" (no key arguments, or numkeys == 0).
            getkeys[cmd] = [] if isinstance(r, hiredis.ReplyError) else [k.decode() for k in r]
    finally:
        conn.close()

    live = CommandTable.from_command_reply(reply)
    assert len(live) == len(table) == len(reply)
    assert live.names() == table.names()
    live_specs = list(live.iter_specs())
    assert [s.name for s in live_specs] == [s.name for s in table.iter_specs()]
    for spec in live_specs:
        assert table.get(spec.name) == spec, spec.name
        assert table.raw_info(spec.name) == live.raw_info(spec.name), spec.name

    if b"redis_version:7.0.15" in version:
        # The builtin was generated from this very version: the regenerated file is identical.
        sys.path.insert(0, str(REPO / "scripts"))
        try:
            import gen_command_table as gen
        finally:
            sys.path.pop(0)
        assert gen.render(reply, "7.0.15", "redis-server 7.0.15 COMMAND") == (
            BUILTIN_PATH.read_text()
        )

    for cmd, expected in KEY_CASES:
        if cmd in GETKEYS_DIFFERS:
            assert getkeys[cmd] == GETKEYS_DIFFERS[cmd], cmd
            continue
        # Redis lists keys per spec (a genericGetKeys destination last): compare as sets.
        assert sorted(getkeys[cmd]) == sorted(keys_of(table, cmd)), cmd
        assert sorted(expected) == sorted(getkeys[cmd]), cmd
