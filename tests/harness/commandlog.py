"""What a redis-server itself executed, from its own SLOWLOG with a threshold of 0.

Tests use this to assert what the code under test controls — which commands it sent and how
much each one carried — instead of timing anything on a machine that may be loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import redis

_MORE_ARGS = re.compile(rb"^\.\.\. \((\d+) more arguments\)$")
_MORE_BYTES = re.compile(rb"\.\.\. \((\d+) more bytes\)$")


@dataclass(frozen=True)
class Command:
    """One executed command: its arguments as logged (Redis keeps the first 31 of a longer
    command and at most 128 bytes of each), the real counts, and the server's own duration."""

    args: tuple[bytes, ...]
    nargs: int
    usec: int

    @property
    def name(self) -> str:
        return self.args[0].decode().upper()

    def arg_len(self, i: int) -> int:
        """The real length in bytes of argument i (undoing the log's truncation)."""
        a = self.args[i]
        m = _MORE_BYTES.search(a)
        return len(a) - len(m.group(0)) + int(m.group(1)) if m else len(a)


class CommandLog:
    """`with CommandLog(port) as log: ...; log.commands()` — every command the server ran
    inside the block (oldest first). The server's slowlog settings are restored on exit."""

    def __init__(self, port: int, host: str = "127.0.0.1", max_len: int = 1_000_000) -> None:
        self.conn = redis.Redis(host=host, port=port, protocol=2)
        self.max_len = max_len
        self.saved: dict[str, Any] = {}

    def __enter__(self) -> CommandLog:
        for name in ("slowlog-log-slower-than", "slowlog-max-len"):
            self.saved.update(self.conn.config_get(name))
        self.conn.config_set("slowlog-max-len", self.max_len)
        self.conn.config_set("slowlog-log-slower-than", 0)
        self.conn.execute_command("SLOWLOG", "RESET")
        return self

    def __exit__(self, *exc: Any) -> None:
        for name, value in self.saved.items():
            self.conn.config_set(name, value)
        self.conn.close()

    def commands(self) -> list[Command]:
        # (SLOWLOG GET as separate words: redis-py then returns the raw entries.)
        raw = self.conn.execute_command("SLOWLOG", "GET", "-1")
        out = []
        for entry in reversed(raw):
            args = tuple(entry[3])
            nargs = len(args)
            m = _MORE_ARGS.match(args[-1]) if args else None
            if m:
                nargs = len(args) - 1 + int(m.group(1))
            out.append(Command(args, nargs, int(entry[2])))
        return [c for c in out if c.name not in ("SLOWLOG", "CONFIG")]
