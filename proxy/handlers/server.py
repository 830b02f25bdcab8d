"""Server commands the proxy answers itself: COMMAND TIME DBSIZE SCRIPT INFO.

Cluster-wide questions (DBSIZE, INFO, SCRIPT LOAD) are broadcast to every group and merged.
"""

from __future__ import annotations

import time

from slotcore.resp import (
    SetReply,
    Status,
    encode,
    encode_array,
    encode_bulk,
    encode_int,
    pack_command,
    parse_reply,
)

from ..client.context import Client
from ..commands.table import CommandSpec
from ..errors import (
    CLUSTERDOWN,
    INVALID_ARGC,
    INVALID_COMMAND,
    INVALID_KEY_ARGS,
    NO_KEY_ARGS,
    not_supported,
    unknown_subcommand,
    wrong_args,
)
from ..fanout import merge
from ..fanout.split import broadcast
from ..report import blocked_clients, proxy_section
from .cluster import cluster_enabled
from .observe import OWN_SECTIONS, own_sections, put_own_sections

# Answered by a backend (any group, on the client's lane): the backend's own command table,
# encoded for the client's protocol (RESP3 sets and maps included). Without any group the
# proxy answers from its table (which was loaded from a backend's COMMAND at start).
_FORWARDED = frozenset({b"count", b"list", b"info", b"docs", b"help"})


def command(c: Client, argv: list[bytes]) -> None:
    table = c.services.table
    sub = argv[1].lower() if len(argv) > 1 else b""
    if sub in (b"getkeys", b"getkeysandflags"):
        if len(argv) < 3:
            c.reply(wrong_args("command|" + sub.decode()))
        else:
            _getkeys(c, argv[2:], sub == b"getkeysandflags")
        return
    if sub and sub not in _FORWARDED:
        c.reply(unknown_subcommand("command", argv[1]))
        return
    group = c.services.router.any_group()
    if group is not None:
        c.send(group, pack_command(*argv))
        return
    proto = c.state.proto
    if not sub:
        c.reply(encode_array([table.raw_info(n) for n in table.names()]))
    elif sub == b"count":
        c.reply(encode_int(table.count()))
    elif sub == b"list":
        if len(argv) == 2:
            c.reply(encode_array(table.all_names()))
        else:
            c.reply(CLUSTERDOWN)  # FILTERBY needs the backend's documentation
    elif sub == b"info":
        names = argv[2:] or [n.encode() for n in table.names()]
        c.reply(encode_array([table.raw_info(n.decode(errors="replace").lower())
                              for n in names]))
    else:  # docs, help
        c.reply(encode({}, proto) if sub == b"docs" else CLUSTERDOWN)


# Key flags as Redis names them in replies (addReplyFlagsForKeyArgs), in its order.
_KEY_FLAGS = ("RO", "RW", "OW", "RM", "access", "update", "insert", "delete", "not_key",
              "incomplete", "variable_flags")


def _flag_set(flags: frozenset[str]) -> SetReply:
    return SetReply(Status(f) for f in _KEY_FLAGS if f.upper() in flags)


def _variable_flags(name: str, argv: list[bytes]) -> frozenset[str] | None:
    """Redis's setGetKeys / bitfieldGetKeys: the flags of a VARIABLE_FLAGS key."""
    if name == "set":
        if any(a.lower() == b"get" for a in argv[3:]):
            return frozenset({"RW", "ACCESS", "UPDATE"})
        return frozenset({"OW", "UPDATE"})
    if name == "bitfield":
        i, argc = 2, len(argv)
        while i < argc:
            left = argc - i - 1
            op = argv[i].lower()
            if op == b"get" and left >= 2:
                i += 3
            elif op == b"overflow" and left >= 1:
                i += 2
            else:  # SET / INCRBY, or a syntax error: not read-only
                return frozenset({"RW", "ACCESS", "UPDATE"})
        return frozenset({"RO", "ACCESS"})
    return None


def _keys_and_flags(spec: CommandSpec, argv: list[bytes]) -> list[tuple[bytes, frozenset[str]]]:
    """The keys the proxy routes `argv` by (spec order, as Redis's getKeysUsingKeySpecs),
    each with its key-spec flags."""
    name = spec.name
    if name == "sort":  # sortGetKeys
        pos = spec.key_positions(argv)
        return [(argv[p], frozenset({"RO", "ACCESS"}) if p == 1
                 else frozenset({"OW", "UPDATE"})) for p in pos]
    if name == "migrate":  # migrateGetKeys
        return [(argv[p], frozenset({"RW", "ACCESS", "DELETE"}))
                for p in spec.key_positions(argv)]
    out: list[tuple[bytes, frozenset[str]]] = []
    for ks in spec.key_specs:
        if ks.not_key:
            continue
        found = ks.positions(argv)
        if found:
            out.extend((argv[p], ks.flags) for p in found)
    if "VARIABLE_FLAGS" in (f for _, fl in out for f in fl):
        var = _variable_flags(name, argv)
        if var is not None:
            out = [(k, var) for k, _ in out]
    return out


def _getkeys(c: Client, inner: list[bytes], with_flags: bool) -> None:
    # Redis's getKeysSubcommandImpl: its checks, in its order.
    table = c.services.table
    spec = table.lookup(inner)
    if spec is None or (spec.subcommands is not None and len(inner) >= 2):
        c.reply(INVALID_COMMAND)
    elif not spec.has_keys:
        c.reply(NO_KEY_ARGS)
    elif not spec.check_arity(len(inner)):
        c.reply(INVALID_ARGC)
    else:
        found = _keys_and_flags(spec, inner)
        if not found:
            c.reply(encode([], 2) if "no_mandatory_keys" in spec.flags else INVALID_KEY_ARGS)
        elif with_flags:
            c.reply(encode([[k, _flag_set(f)] for k, f in found], c.state.proto))
        else:
            c.reply(encode_array([k for k, _ in found]))


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
    own = own_sections(services, sections)
    if sections and all(sec == "proxy" or sec in OWN_SECTIONS for sec in sections):
        # Answered from the proxy's own figures alone, in the order asked.
        parts = [proxy_section(services) if sec == "proxy" else own[OWN_SECTIONS[sec][0]]
                 for sec in dict.fromkeys(sections)]
        c.reply(encode_bulk("\r\n".join(p.rstrip("\r\n") + "\r\n" for p in parts)
                            .encode()))
        return

    def merge_info(parts: list[bytes], gids: list[int]) -> bytes:
        # Built when the parts are in, so the proxy's own figures are as fresh as theirs.
        # The proxy's own figures win over the backends': cluster_enabled is 1 when it
        # answers as a Redis Cluster (handlers/cluster.py).
        overrides = {sec: dict(fields) for sec, fields in services.info_overrides.items()}
        overrides.setdefault("Cluster", {})["cluster_enabled"] = str(cluster_enabled(services))
        merged = merge.merge_info(parts, sections, proxy_section(services),
                                  len(services.clients), services.port,
                                  services.stats.commands, blocked_clients(services), overrides)
        if not own or merged[:1] != b"$":
            return merged
        text = parse_reply(merged)
        assert isinstance(text, bytes)
        return encode_bulk(put_own_sections(text.decode(errors="replace"), own).encode())

    broadcast(c, pack_command(*argv), merge_info)


HANDLERS = {
    "command": command,
    "time": time_,
    "dbsize": dbsize,
    "script": script,
    "info": info,
}
