"""Connection commands the proxy answers itself: PING ECHO QUIT AUTH HELLO SELECT CLIENT RESET
READONLY READWRITE.

Connection state lives in the proxy (`ClientState`, the mode), never in a backend connection,
because backend connections are shared by all clients.
"""

from __future__ import annotations

from slotcore.resp import OK, PONG, encode_array, encode_bulk, encode_int, encode_simple

from ..auth import check_password
from ..client.context import Client
from ..client.modes.auth import AUTH_REQUIRED
from ..client.modes.normal import NORMAL
from ..errors import (
    BAD_CLIENT_NAME,
    DB_RANGE,
    HELLO_NOAUTH,
    NO_PASSWORD,
    NO_SUCH_CLIENT,
    NOPROTO,
    NOT_INTEGER,
    PROTO_NOT_INTEGER,
    SYNTAX,
    UNBLOCK_REASON,
    WRONGPASS,
    hello_syntax,
    not_supported,
    subcommand_syntax,
    unrecognized_option,
    wrong_args,
)


def ping(c: Client, argv: list[bytes]) -> None:
    if len(argv) > 2:
        c.reply(wrong_args("ping"))
    else:
        c.reply(PONG if len(argv) == 1 else encode_bulk(argv[1]))


def echo(c: Client, argv: list[bytes]) -> None:
    c.reply(encode_bulk(argv[1]))


def quit_(c: Client, argv: list[bytes]) -> None:
    c.reply(OK)
    c.close_after_replies()


def auth(c: Client, argv: list[bytes]) -> None:
    if len(argv) > 3:
        c.reply(SYNTAX)
        return
    cfg = c.services.cfg
    if not cfg.password:
        c.reply(NO_PASSWORD)
        return
    user, password = (None, argv[1]) if len(argv) == 2 else (argv[1], argv[2])
    if check_password(cfg, user, password):
        if c.mode is AUTH_REQUIRED:
            c.set_mode(NORMAL)
        c.reply(OK)
    else:
        c.reply(WRONGPASS)


def hello(c: Client, argv: list[bytes]) -> None:
    i = 1
    state = c.state
    if len(argv) > 1:
        try:
            proto = int(argv[1])
        except ValueError:
            c.reply(PROTO_NOT_INTEGER)
            return
        if proto not in (2, 3):
            c.reply(NOPROTO)
            return
        i = 2
    else:
        proto = state.proto
    cfg = c.services.cfg
    authed = c.mode is not AUTH_REQUIRED
    new_name: bytes | None = None
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"AUTH" and i + 2 < len(argv):
            if not cfg.password:
                c.reply(NO_PASSWORD)
                return
            if not check_password(cfg, argv[i + 1], argv[i + 2]):
                c.reply(WRONGPASS)
                return
            authed = True
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(argv):
            new_name = argv[i + 1]
            i += 2
        else:
            c.reply(hello_syntax(opt))
            return
    if authed and c.mode is AUTH_REQUIRED:
        c.set_mode(NORMAL)
    if not authed:
        c.reply(HELLO_NOAUTH)
        return
    if new_name is not None:
        if not valid_name(new_name):
            c.reply(BAD_CLIENT_NAME)
            return
        state.name = new_name
    c.switch_protocol(proto)
    fields: list = [
        "server", "redis", "version", c.services.backend_version, "proto", proto,
        "id", state.id, "mode", "standalone", "role", "master", "modules", [],
    ]
    if proto == 3:
        # RESP3 map: clients read HELLO's reply as a dict
        c.reply(b"%%%d\r\n" % (len(fields) // 2) + encode_array(fields).split(b"\r\n", 1)[1])
    else:
        c.reply(encode_array(fields))


def select(c: Client, argv: list[bytes]) -> None:
    try:
        db = int(argv[1])
    except ValueError:
        c.reply(NOT_INTEGER)
        return
    # Backend connections are shared and SELECTed once; the proxy serves DB 0 only.
    c.reply(OK if db == 0 else DB_RANGE)


def valid_name(name: bytes) -> bool:
    return all(33 <= ch <= 126 for ch in name)


def client_line(c: Client) -> str:
    s = c.state
    now = c.services.loop_time()
    return (
        f"id={s.id} addr={s.addr} name={s.name.decode(errors='replace')} "
        f"age={int(now - s.created)} db={s.db} "
        f"lib-name={s.lib_name.decode(errors='replace')} "
        f"lib-ver={s.lib_ver.decode(errors='replace')} "
        f"multi={c.mode.multi} pipeline={len(c.fifo)} commands={s.commands}{_sub_fields(c)}\n"
    )


def _sub_fields(c: Client) -> str:
    subs = c.subs
    if subs is None:
        return " sub=0 psub=0 ssub=0"
    n = subs.names
    return f" sub={len(n[0])} psub={len(n[1])} ssub={len(n[2])}"


def client(c: Client, argv: list[bytes]) -> None:
    if len(argv) < 2:
        c.reply(wrong_args("client"))
        return
    sub = argv[1].lower()
    n = len(argv)
    state = c.state
    if sub == b"setname" and n == 3:
        if not valid_name(argv[2]):
            c.reply(BAD_CLIENT_NAME)
        else:
            state.name = argv[2]
            c.reply(OK)
    elif sub == b"getname" and n == 2:
        c.reply(encode_bulk(state.name or None))
    elif sub == b"id" and n == 2:
        c.reply(encode_int(state.id))
    elif sub == b"info" and n == 2:
        c.reply(encode_bulk(client_line(c).encode()))
    elif sub == b"list":
        lines = "".join(client_line(x) for x in c.services.clients.clients)
        c.reply(encode_bulk(lines.encode()))
    elif sub == b"setinfo" and n == 4:
        attr = argv[2].lower()
        if attr == b"lib-name":
            state.lib_name = argv[3]
        elif attr == b"lib-ver":
            state.lib_ver = argv[3]
        else:
            c.reply(unrecognized_option(argv[2]))
            return
        c.reply(OK)
    elif sub == b"kill" and n == 4 and argv[2].lower() in (b"id", b"addr"):
        _client_kill(c, argv[2].lower(), argv[3])
    elif sub == b"unblock":
        _client_unblock(c, argv)
    elif sub == b"help":
        c.reply(encode_array([
            "CLIENT <subcommand> (proxy): SETNAME name | GETNAME | ID | INFO | LIST | "
            "SETINFO LIB-NAME|LIB-VER value | KILL ID id | KILL ADDR ip:port | "
            "UNBLOCK id [TIMEOUT|ERROR]"]))
    elif sub in (b"setname", b"getname", b"id", b"info", b"setinfo", b"kill"):
        c.reply(wrong_args("client|" + sub.decode()))
    else:
        c.reply(not_supported("client|" + sub.decode(errors="replace")))


def _client_unblock(c: Client, argv: list[bytes]) -> None:
    """CLIENT UNBLOCK <id> [TIMEOUT|ERROR], with Redis's checks in Redis's order."""
    n = len(argv)
    if n < 3:
        c.reply(wrong_args("client|unblock"))
        return
    if n > 4:
        c.reply(subcommand_syntax("client", argv[1]))
        return
    how = b"TIMEOUT"
    if n == 4:
        how = argv[3].upper()
        if how not in (b"TIMEOUT", b"ERROR"):
            c.reply(UNBLOCK_REASON)
            return
    try:
        target = int(argv[2])
    except ValueError:
        c.reply(NOT_INTEGER)
        return
    blocking = c.services.blocking
    if blocking is None:
        c.reply(encode_int(0))
    else:
        blocking.unblock(c, target, how)


def _client_kill(c: Client, how: bytes, target: bytes) -> None:
    killed = 0
    for other in list(c.services.clients.clients):
        s = other.state
        if (how == b"id" and target == str(s.id).encode()) or (
            how == b"addr" and target == s.addr.encode()
        ):
            if other is c:
                c.close_after_replies()
            else:
                other.close_now()
            killed += 1
    c.reply(OK if killed else NO_SUCH_CLIENT)


def reset(c: Client, argv: list[bytes]) -> None:
    if c.subs is not None:
        c.subs.reset()  # every subscription dropped, without confirmations (as Redis)
    c.mode.leave(c)  # out of MULTI, WATCHed keys forgotten
    c.state.name = b""
    c.set_mode(AUTH_REQUIRED if c.services.cfg.password else NORMAL)
    c.switch_protocol(2)
    c.reply(encode_simple("RESET"))


def readonly(c: Client, argv: list[bytes]) -> None:
    c.reply(OK)


HANDLERS = {
    "ping": ping,
    "echo": echo,
    "quit": quit_,
    "auth": auth,
    "hello": hello,
    "select": select,
    "client": client,
    "reset": reset,
    "readonly": readonly,
    "readwrite": readonly,
}
