#!/usr/bin/env python3
"""Regenerate proxy/data/commands.json from a live redis-server's COMMAND reply.

    python scripts/gen_command_table.py --port 6379 [--host 127.0.0.1] [--output PATH]

The reply is read with a raw socket and hiredis.Reader rather than redis-py's client, because
redis-py post-processes COMMAND into dicts and drops fields; the JSON must keep Redis's exact
reply structure so that `CommandTable.builtin()` builds the same table as
`CommandTable.from_command_reply()` does on a live backend.  The only changes are bytes -> str
(JSON has no bytes) and sorting (commands and subcommands by name), which Redis emits in
hash-table order -- sorting keeps regenerated files diffable.

Self-contained on purpose (no import of `proxy`), so it runs from a bare checkout.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path
from typing import Any

import hiredis

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "proxy" / "data" / "commands.json"


def encode_command(*args: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def request(sock: socket.socket, reader: hiredis.Reader, *args: bytes | str) -> Any:
    sock.sendall(encode_command(*args))
    while True:
        reply = reader.gets()
        if reply is not False:
            if isinstance(reply, hiredis.ReplyError):
                raise RuntimeError(f"{args[0]!s}: {reply}")
            return reply
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError("connection closed by redis-server")
        reader.feed(data)


def fetch(host: str, port: int, timeout: float = 10.0) -> tuple[list[Any], str]:
    """The raw COMMAND reply (hiredis shape: strings are bytes) and the server's version."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = hiredis.Reader()
        info = request(sock, reader, "INFO", "server")
        version = "unknown"
        for line in info.decode().splitlines():
            if line.startswith("redis_version:"):
                version = line.split(":", 1)[1].strip()
        reply = request(sock, reader, "COMMAND")
    return reply, version


def to_json(obj: Any) -> Any:
    if isinstance(obj, bytes):
        # Command tables are ASCII; surrogateescape keeps any odd byte round-trippable anyway.
        return obj.decode("utf-8", "surrogateescape")
    if isinstance(obj, list):
        return [to_json(o) for o in obj]
    return obj


def name_of(entry: list[Any]) -> str:
    return str(entry[0]).lower()


def sort_entry(entry: list[Any]) -> list[Any]:
    if len(entry) > 9 and entry[9]:
        entry = [*entry[:9], sorted((sort_entry(s) for s in entry[9]), key=name_of), *entry[10:]]
    return entry


def render(reply: list[Any], version: str, source: str) -> str:
    commands = sorted((sort_entry(to_json(e)) for e in reply if e), key=name_of)
    header = {
        "redis_version": version,
        "source": source,
        "generated_by": "scripts/gen_command_table.py",
        "format": "raw Redis 7 COMMAND reply: [name, arity, flags, first_key, last_key, step, "
        "acl_categories, tips, key_specs, subcommands]; strings decoded from bytes",
        "command_count": len(commands),
    }
    # One command per line: small diffs when regenerating against a newer server.
    lines = [json.dumps(header)[:-1] + ', "commands": [']
    lines += [json.dumps(c, separators=(",", ":")) + "," for c in commands]
    if commands:
        lines[-1] = lines[-1][:-1]
    lines.append("]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    reply, version = fetch(args.host, args.port)
    text = render(reply, version, f"redis-server {version} COMMAND")
    json.loads(text)  # never write a file builtin() can't read
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".json.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.output)
    print(f"wrote {len(reply)} commands from redis {version} to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
