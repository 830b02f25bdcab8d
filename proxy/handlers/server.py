"""Server commands the proxy answers itself: COMMAND TIME DBSIZE SCRIPT INFO.

Cluster-wide questions (DBSIZE, INFO, SCRIPT LOAD) are broadcast to every group and merged.
"""

from __future__ import annotations

import time

from slotcore.resp import encode_array, encode_bulk, encode_int, pack_command

from ..client.context import Client
from ..errors import (
    INVALID_ARGC,
    INVALID_COMMAND,
    NO_KEY_ARGS,
    not_supported,
    unknown_subcommand,
)
from ..fanout import merge
from ..fanout.split import broadcast
from ..report import proxy_section


def command(c: Client, argv: list[bytes]) -> None:
    table = c.services.table
    if len(argv) == 1:
        c.reply(encode_array([table.raw_info(n) for n in table.names()]))
        return
    sub = argv[1].lower()
    if sub == b"count":
        c.reply(encode_int(table.count()))
    elif sub == b"list":
        c.reply(encode_array(table.names()))
    elif sub == b"info":
        names = argv[2:] or [n.encode() for n in table.names()]
        c.reply(encode_array([table.raw_info(n.decode(errors="replace").lower())
                              for n in names]))
    elif sub == b"docs":
        # Documentation is static text the backends already have; any group can answer.
        group = c.services.router.any_group()
        if group is None:
            c.reply(encode_array([]))
        else:
            c.send(group, pack_command(*argv))
    elif sub == b"getkeys" and len(argv) >= 3:
        spec = table.lookup(argv[2:])
        if spec is None:
            c.reply(INVALID_COMMAND)
        elif not spec.check_arity(len(argv) - 2):
            c.reply(INVALID_ARGC)
        else:
            keys = spec.keys(argv[2:])
            c.reply(encode_array(keys) if keys else NO_KEY_ARGS)
    else:
        c.reply(unknown_subcommand("command", argv[1]))


def time_(c: Client, argv: list[bytes]) -> None:
    now = time.time()
    sec = int(now)
    c.reply(encode_array([str(sec).encode(), str(int((now - sec) * 1_000_000)).encode()]))


def dbsize(c: Client, argv: list[bytes]) -> None:
    broadcast(c, pack_command(b"DBSIZE"), merge.merge_dbsize)


def script(c: Client, argv: list[bytes]) -> None:
    sub = argv[1].lower() if len(argv) > 1 else b""
    packed = pack_command(*argv)
    if sub == b"load" and len(argv) == 3:
        # Loaded everywhere, so EVALSHA works whichever group its keys hash to.
        broadcast(c, packed, merge.merge_same)
    elif sub == b"exists" and len(argv) >= 3:
        broadcast(c, packed, merge.merge_and_arrays)
    elif sub == b"flush" and len(argv) <= 3:
        broadcast(c, packed, merge.merge_all_ok)
    elif sub == b"kill" and len(argv) == 2:
        from .keyspace import merge_kill
        broadcast(c, packed, merge_kill)
    else:
        c.reply(not_supported("script|" + sub.decode(errors="replace")))


def info(c: Client, argv: list[bytes]) -> None:
    services = c.services
    sections = [a.decode(errors="replace").lower() for a in argv[1:]]
    if sections and all(sec == "proxy" for sec in sections):
        c.reply(encode_bulk(proxy_section(services).encode()))
        return

    def merge_info(parts: list[bytes], gids: list[int]) -> bytes:
        # Built when the parts are in, so the proxy's own figures are as fresh as theirs.
        blocked = sum(1 for x in services.clients.clients if x.mode.name == "blocked")
        return merge.merge_info(parts, sections, proxy_section(services),
                                len(services.clients), services.port, services.stats.commands,
                                blocked, services.info_overrides)

    broadcast(c, pack_command(*argv), merge_info)


HANDLERS = {
    "command": command,
    "time": time_,
    "dbsize": dbsize,
    "script": script,
    "info": info,
}
