"""Commands the proxy answers itself (route LOCAL in the command table).

Connection state (AUTH, SELECT, CLIENT SETNAME, HELLO, QUIT, RESET) lives in the proxy, never in
a backend connection, because backend connections are shared by all clients. Cluster-wide
questions (DBSIZE, INFO, SCRIPT LOAD) are broadcast to every group and merged.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from slotcore.keyslot import key_slot
from slotcore.resp import (
    OK,
    PONG,
    encode_array,
    encode_bulk,
    encode_error,
    encode_int,
    encode_simple,
    pack_command,
)

from . import __version__, fanout
from .errors import (
    DB_RANGE,
    NO_PASSWORD,
    NOPROTO,
    NOT_INTEGER,
    SYNTAX,
    WRONGPASS,
    not_supported,
    unknown_subcommand,
    wrong_args,
)

if TYPE_CHECKING:
    from .commands import CommandSpec
    from .router import Group
    from .session import ClientSession

Handler = Callable[["ClientSession", list[bytes]], None]


def handle(session: ClientSession, spec: CommandSpec, argv: list[bytes]) -> None:
    base = spec.name.partition("|")[0]
    handler = HANDLERS.get(base)
    if handler is None:
        session.reply(not_supported(spec.name))
        return
    if not spec.check_arity(len(argv)):
        session.reply(wrong_args(spec.name))
        return
    handler(session, argv)


def _ping(s: ClientSession, argv: list[bytes]) -> None:
    if len(argv) > 2:
        s.reply(wrong_args("ping"))
    else:
        s.reply(PONG if len(argv) == 1 else encode_bulk(argv[1]))


def _echo(s: ClientSession, argv: list[bytes]) -> None:
    s.reply(encode_bulk(argv[1]))


def _quit(s: ClientSession, argv: list[bytes]) -> None:
    s.reply(OK)
    s.close_after_replies()


def _check_password(s: ClientSession, user: bytes | None, password: bytes) -> bool:
    cfg = s.server.cfg
    # `AUTH password` means user "default" (Redis 6+), and clients send HELLO 3 AUTH default
    # password for it, so "default" is accepted alongside the configured username.
    if user is not None and user != b"default" and user != (cfg.username or "").encode():
        return False
    return hmac.compare_digest(password, (cfg.password or "").encode())


def _auth(s: ClientSession, argv: list[bytes]) -> None:
    if len(argv) > 3:
        s.reply(SYNTAX)
        return
    if not s.server.cfg.password:
        s.reply(NO_PASSWORD)
        return
    user, password = (None, argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    if _check_password(s, user, password):
        s.authed = True
        s.reply(OK)
    else:
        s.reply(WRONGPASS)


def _hello(s: ClientSession, argv: list[bytes]) -> None:
    i = 1
    if len(argv) > 1:
        try:
            proto = int(argv[1])
        except ValueError:
            s.reply(encode_error("ERR Protocol version is not an integer or out of range"))
            return
        if proto not in (2, 3):
            s.reply(NOPROTO)
            return
        i = 2
    else:
        proto = s.proto
    new_name: bytes | None = None
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"AUTH" and i + 2 < len(argv):
            if not s.server.cfg.password:
                s.reply(NO_PASSWORD)
                return
            if not _check_password(s, argv[i + 1], argv[i + 2]):
                s.reply(WRONGPASS)
                return
            s.authed = True
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(argv):
            new_name = argv[i + 1]
            i += 2
        else:
            bad = opt.decode(errors="replace")
            s.reply(encode_error(f"ERR Syntax error in HELLO option '{bad}'"))
            return
    if not s.authed:
        s.reply(encode_error("NOAUTH HELLO must be called with the client already authenticated, "
                             "otherwise the HELLO <proto> AUTH <user> <pass> option can be used "
                             "to authenticate the client and select the RESP protocol version "
                             "at the same time"))
        return
    if new_name is not None:
        if not _valid_name(new_name):
            s.reply(_BAD_NAME)
            return
        s.name = new_name
    set_protocol(s, proto)
    fields: list = [
        "server", "redis", "version", s.server.backend_version, "proto", proto, "id", s.id,
        "mode", "standalone", "role", "master", "modules", [],
    ]
    if proto == 3:
        # RESP3 map: clients read HELLO's reply as a dict
        s.reply(b"%%%d\r\n" % (len(fields) // 2) + encode_array(fields).split(b"\r\n", 1)[1])
    else:
        s.reply(encode_array(fields))


def set_protocol(s: ClientSession, proto: int) -> None:
    """Switch the client between RESP2 and RESP3: it moves to connections of that protocol."""
    if proto == s.proto:
        return
    if proto == 3:
        s.router.enable_resp3()
    if s.pending:
        s.barrier = True
    s.proto = proto
    s.cidx = s.router.client_index(s.id, proto)


def _select(s: ClientSession, argv: list[bytes]) -> None:
    try:
        db = int(argv[1])
    except ValueError:
        s.reply(NOT_INTEGER)
        return
    # Backend connections are shared and SELECTed once; the proxy serves DB 0 only.
    s.reply(OK if db == 0 else DB_RANGE)


_BAD_NAME = encode_error(
    "ERR Client names cannot contain spaces, newlines or special characters.")


def _valid_name(name: bytes) -> bool:
    return all(33 <= c <= 126 for c in name)


def _client(s: ClientSession, argv: list[bytes]) -> None:
    if len(argv) < 2:
        s.reply(wrong_args("client"))
        return
    sub = argv[1].lower()
    n = len(argv)
    if sub == b"setname" and n == 3:
        if not _valid_name(argv[2]):
            s.reply(_BAD_NAME)
        else:
            s.name = argv[2]
            s.reply(OK)
    elif sub == b"getname" and n == 2:
        s.reply(encode_bulk(s.name or None))
    elif sub == b"id" and n == 2:
        s.reply(encode_int(s.id))
    elif sub == b"info" and n == 2:
        s.reply(encode_bulk(_client_line(s).encode()))
    elif sub == b"list":
        lines = "".join(_client_line(c) for c in s.server.sessions)
        s.reply(encode_bulk(lines.encode()))
    elif sub == b"setinfo" and n == 4:
        attr = argv[2].lower()
        if attr == b"lib-name":
            s.lib_name = argv[3]
        elif attr == b"lib-ver":
            s.lib_ver = argv[3]
        else:
            s.reply(encode_error(f"ERR Unrecognized option '{argv[2].decode(errors='replace')}'"))
            return
        s.reply(OK)
    elif sub == b"kill" and n == 4 and argv[2].lower() in (b"id", b"addr"):
        _client_kill(s, argv[2].lower(), argv[3])
    elif sub == b"help":
        s.reply(encode_array([
            "CLIENT <subcommand> (proxy): SETNAME name | GETNAME | ID | INFO | LIST | "
            "SETINFO LIB-NAME|LIB-VER value | KILL ID id | KILL ADDR ip:port"]))
    elif sub in (b"setname", b"getname", b"id", b"info", b"setinfo", b"kill"):
        s.reply(wrong_args("client|" + sub.decode()))
    else:
        s.reply(not_supported("client|" + sub.decode(errors="replace")))


def _client_kill(s: ClientSession, how: bytes, target: bytes) -> None:
    killed = 0
    for c in list(s.server.sessions):
        if (how == b"id" and target == str(c.id).encode()) or (
            how == b"addr" and target == c.addr.encode()
        ):
            if c is s:
                s.close_after_replies()
            else:
                c.close_now()
            killed += 1
    s.reply(OK if killed else encode_error("ERR No such client"))


def _client_line(c: ClientSession) -> str:
    now = c.server.loop_time()
    return (
        f"id={c.id} addr={c.addr} name={c.name.decode(errors='replace')} "
        f"age={int(now - c.created)} db=0 "
        f"lib-name={c.lib_name.decode(errors='replace')} "
        f"lib-ver={c.lib_ver.decode(errors='replace')} "
        f"pipeline={len(c.pending)} commands={c.commands}\n"
    )


def _command(s: ClientSession, argv: list[bytes]) -> None:
    table = s.table
    if len(argv) == 1:
        s.reply(encode_array([table.raw_info(n) for n in table.names()]))
        return
    sub = argv[1].lower()
    if sub == b"count":
        s.reply(encode_int(table.count()))
    elif sub == b"list":
        s.reply(encode_array(table.names()))
    elif sub == b"info":
        names = argv[2:] or [n.encode() for n in table.names()]
        s.reply(encode_array([table.raw_info(n.decode(errors="replace").lower())
                              for n in names]))
    elif sub == b"docs":
        # Documentation is static text the backends already have; any group can answer.
        group = s.router.any_group()
        if group is None:
            s.reply(encode_array([]))
        else:
            _forward(s, group, pack_command(*argv))
    elif sub == b"getkeys" and len(argv) >= 3:
        spec = table.lookup(argv[2:])
        if spec is None:
            s.reply(encode_error("ERR Invalid command specified"))
        elif not spec.check_arity(len(argv) - 2):
            s.reply(encode_error("ERR Invalid number of arguments specified for command"))
        else:
            keys = spec.keys(argv[2:])
            s.reply(encode_array(keys) if keys else
                    encode_error("ERR The command has no key arguments"))
    else:
        s.reply(unknown_subcommand("command", argv[1]))


def _forward(s: ClientSession, group: Group, packed: bytes) -> None:
    from .pending import Reply

    reply = Reply(s)
    s.pending.append(reply)
    group.conns[s.cidx].send(packed, reply)


def _time(s: ClientSession, argv: list[bytes]) -> None:
    now = time.time()
    sec = int(now)
    s.reply(encode_array([str(sec).encode(), str(int((now - sec) * 1_000_000)).encode()]))


def _dbsize(s: ClientSession, argv: list[bytes]) -> None:
    fanout.broadcast(s, pack_command(b"DBSIZE"), fanout.merge_dbsize)


def _reset(s: ClientSession, argv: list[bytes]) -> None:
    s.name = b""
    s.authed = not s.server.cfg.password
    set_protocol(s, 2)
    s.reply(encode_simple("RESET"))


def _readonly(s: ClientSession, argv: list[bytes]) -> None:
    s.reply(OK)


def _cluster(s: ClientSession, argv: list[bytes]) -> None:
    sub = argv[1].lower() if len(argv) > 1 else b""
    if sub == b"keyslot" and len(argv) == 3:
        s.reply(encode_int(key_slot(argv[2], s.router.nslots)))
    else:
        s.reply(not_supported("cluster|" + sub.decode(errors="replace")))


def _script(s: ClientSession, argv: list[bytes]) -> None:
    sub = argv[1].lower() if len(argv) > 1 else b""
    packed = pack_command(*argv)
    if sub == b"load" and len(argv) == 3:
        # Loaded everywhere, so EVALSHA works whichever group its keys hash to.
        fanout.broadcast(s, packed, fanout.merge_same)
    elif sub == b"exists" and len(argv) >= 3:
        fanout.broadcast(s, packed, fanout.merge_and_arrays)
    elif sub == b"flush" and len(argv) <= 3:
        fanout.broadcast(s, packed, fanout.merge_all_ok)
    else:
        s.reply(not_supported("script|" + sub.decode(errors="replace")))


# ---------------------------------------------------------------------- INFO
_SUMMED_SECTIONS = {"memory", "stats", "persistence", "cpu", "keyspace", "clients"}


def _info(s: ClientSession, argv: list[bytes]) -> None:
    sections = [a.decode(errors="replace").lower() for a in argv[1:]]
    if sections and all(sec == "proxy" for sec in sections):
        s.reply(encode_bulk(_proxy_section(s).encode()))
        return
    fanout.broadcast(s, pack_command(*argv), lambda parts, groups: _merge_info(
        s, sections, parts, groups))


def _proxy_section(s: ClientSession) -> str:
    srv = s.server
    router = s.router
    lines = [
        "# Proxy",
        f"proxy_version:{__version__}",
        f"proxy_id:{srv.cfg.resolved_proxy_id()}",
        f"process_id:{os.getpid()}",
        f"tcp_port:{srv.port}",
        f"uptime_in_seconds:{int(srv.loop_time() - srv.started)}",
        f"connected_clients:{len(srv.sessions)}",
        f"maxclients:{srv.cfg.limits.max_clients}",
        f"total_connections_received:{srv.connections_received}",
        f"rejected_connections:{srv.rejected}",
        f"total_commands_processed:{srv.commands}",
        f"instantaneous_ops_per_sec:{int(srv.ops_per_sec)}",
        f"slots:{router.nslots}",
        f"slot_map_epoch:{router.epoch}",
        f"groups:{len(router.groups)}",
        f"groups_up:{sum(1 for g in router.groups.values() if g.up)}",
    ]
    for g in router.groups.values():
        reqs = sum(c.requests for c in g.conns)
        errs = sum(c.errors for c in g.conns)
        lines.append(
            f"group_{g.gid}:master={g.master},status={'up' if g.up else 'down'},"
            f"slots={router.route.count(g)},requests={reqs},errors={errs}")
    return "\r\n".join(lines) + "\r\n"


def _parse_info(text: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    cur: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("# "):
            cur = out.setdefault(line[2:].strip(), {})
        elif cur is not None and ":" in line:
            k, _, v = line.partition(":")
            cur[k] = v
    return out


def _num(v: str) -> int | float | None:
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return None


def _human(n: float) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{int(n)}B"


def _merge_info(s: ClientSession, sections: list[str], parts: list[bytes],
                groups: list[Group]) -> bytes:
    from slotcore.resp import parse_reply

    infos: list[dict[str, dict[str, str]]] = []
    for p in parts:
        if p[:1] == b"$":
            value = parse_reply(p)
            if isinstance(value, bytes):
                infos.append(_parse_info(value.decode(errors="replace")))
    merged: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for info in infos:
        for sec, fields in info.items():
            if sec not in merged:
                merged[sec] = {}
                order.append(sec)
            target = merged[sec]
            summed = sec.lower() in _SUMMED_SECTIONS
            for k, v in fields.items():
                if sec.lower() == "keyspace":
                    target[k] = _merge_keyspace(target.get(k), v)
                elif summed and k in target and (a := _num(target[k])) is not None \
                        and (b := _num(v)) is not None and not k.endswith(("_ratio", "_perc")):
                    total = a + b
                    target[k] = str(round(total, 2) if isinstance(total, float) else total)
                elif k not in target:
                    target[k] = v
    # Human-readable memory figures are recomputed from the summed byte counts.
    mem = merged.get("Memory", {})
    for k in list(mem):
        if k.endswith("_human") and (raw := _num(mem.get(k[: -len("_human")], ""))) is not None:
            mem[k] = _human(raw)
    # Connection figures describe the proxy, not the backends' view of the proxy.
    if "Clients" in merged:
        merged["Clients"]["connected_clients"] = str(len(s.server.sessions))
    if "Server" in merged:
        srv = merged["Server"]
        srv["redis_mode"] = "proxy"
        srv["process_id"] = str(os.getpid())
        srv["tcp_port"] = str(s.server.port)
    if "Stats" in merged:
        merged["Stats"]["total_commands_processed_proxy"] = str(s.server.commands)
    text = ""
    if not sections or any(x in ("all", "everything", "default", "proxy") for x in sections):
        text = _proxy_section(s) + "\r\n"
    for sec in order:
        text += f"# {sec}\r\n" + "".join(f"{k}:{v}\r\n" for k, v in merged[sec].items()) + "\r\n"
    return encode_bulk(text.rstrip("\r\n").encode() + b"\r\n")


def _merge_keyspace(old: str | None, new: str) -> str:
    def parse(v: str) -> dict[str, int]:
        return {a: int(b) for a, _, b in (f.partition("=") for f in v.split(",")) if b.isdigit()}

    n = parse(new)
    if old is None:
        return ",".join(f"{k}={v}" for k, v in n.items())
    o = parse(old)
    keys = o.get("keys", 0) + n.get("keys", 0)
    expires = o.get("expires", 0) + n.get("expires", 0)
    # avg_ttl is weighted by each side's keys with a TTL.
    ttl = 0
    if expires:
        ttl = (o.get("avg_ttl", 0) * o.get("expires", 0) +
               n.get("avg_ttl", 0) * n.get("expires", 0)) // expires
    return f"keys={keys},expires={expires},avg_ttl={ttl}"


HANDLERS: dict[str, Handler] = {
    "ping": _ping,
    "echo": _echo,
    "quit": _quit,
    "auth": _auth,
    "hello": _hello,
    "select": _select,
    "client": _client,
    "command": _command,
    "time": _time,
    "dbsize": _dbsize,
    "reset": _reset,
    "readonly": _readonly,
    "readwrite": _readonly,
    "cluster": _cluster,
    "script": _script,
    "info": _info,
}
