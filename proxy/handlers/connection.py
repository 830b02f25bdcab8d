"""Connection commands the proxy answers itself: PING ECHO QUIT AUTH HELLO SELECT CLIENT RESET
READONLY READWRITE.

Connection state lives in the proxy (`ClientState`, the mode), never in a backend connection,
because backend connections are shared by all clients.
"""

from __future__ import annotations

from slotcore.resp import (
    OK,
    PONG,
    Status,
    Verbatim,
    encode,
    encode_bulk,
    encode_int,
    encode_simple,
)

from ..auth import check_password
from ..client.context import Client
from ..client.modes.auth import AUTH_REQUIRED
from ..client.modes.normal import NORMAL
from ..errors import (
    BAD_CLIENT_NAME,
    CLIENT_ID_RANGE,
    DB_RANGE,
    HELLO_NOAUTH,
    INVALID_CLIENT_ID,
    NO_PASSWORD,
    NO_SUCH_CLIENT,
    NOPROTO,
    NOT_INTEGER,
    PROTO_NOT_INTEGER,
    SYNTAX,
    UNBLOCK_REASON,
    WRONGPASS,
    hello_syntax,
    no_such_user,
    not_supported,
    subcommand_syntax,
    unknown_client_type,
    unknown_subcommand,
    unrecognized_option,
    wrong_args,
)
from .cluster import reset_read_policy


def ping(c: Client, argv: list[bytes]) -> None:
    # Subscribed RESP2 clients get ["pong", msg]: client.modes.subscribed.
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
    # As Redis 6+'s authCommand: `AUTH password` is user "default"; with no password
    # configured the default user is `nopass`, so `AUTH default <anything>` succeeds and only
    # the one-argument form gets the "without any password configured" error.
    if len(argv) > 3:
        c.reply(SYNTAX)
        return
    cfg = c.services.cfg
    if len(argv) == 2:
        if not cfg.password:
            c.reply(NO_PASSWORD)
            return
        user, password = b"default", argv[1]
    else:
        user, password = argv[1], argv[2]
    if _authenticate(c, user, password):
        c.reply(OK)
    else:
        c.reply(WRONGPASS)


def _authenticate(c: Client, user: bytes, password: bytes) -> bool:
    cfg = c.services.cfg
    # Without a password the default user is nopass (any password) and no other user exists.
    ok = check_password(cfg, user, password) if cfg.password else user == b"default"
    if ok:
        c.state.user = user.decode(errors="replace")
        if c.mode is AUTH_REQUIRED:
            c.set_mode(NORMAL)
    return ok


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
    creds: tuple[bytes, bytes] | None = None
    new_name: bytes | None = None
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"AUTH" and i + 2 < len(argv):
            creds = (argv[i + 1], argv[i + 2])
            i += 3
        elif opt == b"SETNAME" and i + 1 < len(argv):
            new_name = argv[i + 1]
            if not valid_name(new_name):  # checked while parsing, before AUTH (as Redis)
                c.reply(BAD_CLIENT_NAME)
                return
            i += 2
        else:
            c.reply(hello_syntax(opt))
            return
    if creds is not None and not _authenticate(c, *creds):
        c.reply(WRONGPASS)
        return
    if c.mode is AUTH_REQUIRED:
        c.reply(HELLO_NOAUTH)
        return
    if new_name is not None:
        state.name = new_name
    c.switch_protocol(proto)
    c.reply(encode({
        "server": "redis", "version": c.services.backend_version, "proto": proto,
        "id": state.id, "mode": "standalone", "role": "master", "modules": [],
    }, proto))


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


CLIENT_TYPES = {b"normal": "normal", b"pubsub": "pubsub", b"master": "master",
                b"replica": "replica", b"slave": "replica"}


def _client_type(c: Client) -> str:
    subs = c.subs
    return "pubsub" if subs is not None and subs.total() else "normal"


def _flags(c: Client) -> str:
    # Redis's catClientInfoString order: P (subscribed), x (MULTI), c (close after reply),
    # e (no-evict); N when none.
    f = ""
    if _client_type(c) == "pubsub":
        f += "P"
    if c.mode.multi >= 0:
        f += "x"
    if c.closing:
        f += "c"
    if c.state.no_evict:
        f += "e"
    return f or "N"


def _cmd_name(cmd: str | bytes) -> str:
    return cmd.decode(errors="replace").lower() if isinstance(cmd, bytes) else cmd


def client_line(c: Client) -> str:
    """One CLIENT INFO / CLIENT LIST line: Redis 7.2's fields in its order (values the proxy
    does not track, such as query-buffer sizes, are 0), then the proxy's own (pipeline=:
    replies owed; commands=: commands run)."""
    s = c.state
    now = c.services.loop_time()
    d = "replace"
    return (
        f"id={s.id} addr={s.addr} laddr={s.laddr} fd={s.fd} name={s.name.decode(errors=d)} "
        f"age={int(now - s.created)} idle={int(now - s.last_read)} flags={_flags(c)} "
        f"db={s.db}{_sub_fields(c)} multi={c.mode.multi} qbuf=0 qbuf-free=0 argv-mem=0 "
        f"multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r "
        f"cmd={_cmd_name(s.cmd)} user={s.user} redir=-1 resp={s.proto} "
        f"lib-name={s.lib_name.decode(errors=d)} lib-ver={s.lib_ver.decode(errors=d)} "
        f"pipeline={len(c.fifo)} commands={s.commands}\n"
    )


def _sub_fields(c: Client) -> str:
    subs = c.subs
    if subs is None:
        return " sub=0 psub=0 ssub=0"
    n = subs.names
    return f" sub={len(n[0])} psub={len(n[1])} ssub={len(n[2])}"


def _all_clients(c: Client) -> list[Client]:
    return sorted(c.services.clients.clients, key=lambda x: x.state.id)  # Redis: by age


CLIENT_HELP = [
    "CLIENT <subcommand> [<arg> ...]. Subcommands (answered by the proxy):",
    "SETNAME <name> | GETNAME | ID | INFO | SETINFO LIB-NAME|LIB-VER <value>",
    "LIST [TYPE normal|pubsub|master|replica] [ID <id> [<id> ...]]",
    "KILL <ip:port> | KILL [ID <id>] [ADDR <ip:port>] [LADDR <ip:port>] [TYPE <type>] "
    "[USER <user>] [SKIPME yes|no]",
    "UNBLOCK <id> [TIMEOUT|ERROR] | REPLY ON|OFF|SKIP | NO-EVICT ON|OFF | NO-TOUCH OFF | "
    "GETREDIR",
]

# Arity of each subcommand the proxy answers (Redis's: > 0 exact, < 0 at least).
CLIENT_ARITY = {b"setname": 3, b"getname": 2, b"id": 2, b"info": 2, b"list": -2,
                b"setinfo": 4, b"kill": -3, b"reply": 3, b"no-evict": 3, b"no-touch": 3,
                b"getredir": 2, b"help": 2, b"unblock": -3}
_PER_CLIENT = "needs a backend connection of the client's own"


def client(c: Client, argv: list[bytes]) -> None:
    if len(argv) < 2:
        c.reply(wrong_args("client"))
        return
    sub = argv[1].lower()
    n = len(argv)
    state = c.state
    proto = state.proto
    arity = CLIENT_ARITY.get(sub)
    if arity is None:
        name = "client|" + sub.decode(errors="replace")
        if sub in (b"tracking", b"caching", b"trackinginfo"):
            c.reply(not_supported(name, _PER_CLIENT))
        elif name in c.services.table:
            c.reply(not_supported(name))  # PAUSE, UNPAUSE, UNBLOCK ...
        else:
            c.reply(unknown_subcommand("client", argv[1]))
        return
    if (n != arity) if arity > 0 else (n < -arity):
        c.reply(wrong_args("client|" + sub.decode()))
        return
    if sub == b"setname":
        if not valid_name(argv[2]):
            c.reply(BAD_CLIENT_NAME)
        else:
            state.name = argv[2]
            c.reply(OK)
    elif sub == b"getname":
        c.reply(encode(state.name or None, proto))
    elif sub == b"id":
        c.reply(encode_int(state.id))
    elif sub == b"info":
        c.reply(encode(Verbatim(client_line(c).encode()), proto))
    elif sub == b"list":
        _client_list(c, argv)
    elif sub == b"setinfo":
        attr = argv[2].lower()
        if attr == b"lib-name":
            state.lib_name = argv[3]
        elif attr == b"lib-ver":
            state.lib_ver = argv[3]
        else:
            c.reply(unrecognized_option(argv[2]))
            return
        c.reply(OK)
    elif sub == b"kill":
        _client_kill(c, argv)
    elif sub == b"unblock":
        _client_unblock(c, argv)
    elif sub == b"reply":
        mode = argv[2].lower()
        if mode not in (b"on", b"off", b"skip"):
            c.reply(SYNTAX)
            return
        c.reply_mode(mode)
        if mode == b"on":
            c.reply(OK)
    elif sub in (b"no-evict", b"no-touch"):
        on = argv[2].lower()
        if on not in (b"on", b"off"):
            c.reply(SYNTAX)
        elif sub == b"no-touch" and on == b"on":
            # Would have to be set on the shared backend connections, for every client.
            c.reply(not_supported("client|no-touch on", _PER_CLIENT))
        else:
            if sub == b"no-evict":
                state.no_evict = on == b"on"
            c.reply(OK)
    elif sub == b"getredir":
        c.reply(encode_int(-1))  # tracking is never on
    else:  # help
        c.reply(encode([Status(line) for line in CLIENT_HELP], proto))


def _client_list(c: Client, argv: list[bytes]) -> None:
    # As Redis's clientCommand: LIST, LIST TYPE <type>, LIST ID <id> [<id> ...].
    n = len(argv)
    if n == 2:
        chosen = _all_clients(c)
    elif n == 4 and argv[2].lower() == b"type":
        kind = CLIENT_TYPES.get(argv[3].lower())
        if kind is None:
            c.reply(unknown_client_type(argv[3]))
            return
        chosen = [x for x in _all_clients(c) if _client_type(x) == kind]
    elif n > 3 and argv[2].lower() == b"id":
        by_id = {x.state.id: x for x in c.services.clients.clients}
        chosen = []
        for raw in argv[3:]:
            try:
                cid = int(raw)
            except ValueError:
                c.reply(INVALID_CLIENT_ID)
                return
            if cid in by_id:
                chosen.append(by_id[cid])  # in the order asked, repeats included (as Redis)
    else:
        c.reply(SYNTAX)
        return
    text = "".join(client_line(x) for x in chosen)
    c.reply(encode(Verbatim(text.encode()), c.state.proto))


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


def _client_kill(c: Client, argv: list[bytes]) -> None:
    # As Redis's clientCommand: the old form `KILL ip:port` (OK / "No such client", may kill
    # the caller) and the filter form (the number killed, SKIPME yes by default).
    addr = laddr = user = kind = None
    cid = 0
    skipme = True
    if len(argv) == 3:
        addr = argv[2].decode(errors="replace")
        skipme = False
    else:
        users = {"default", c.services.cfg.username or "default"}
        i = 2
        while i < len(argv):
            opt = argv[i].lower()
            if i + 1 >= len(argv):
                c.reply(SYNTAX)
                return
            val = argv[i + 1]
            if opt == b"id":
                try:
                    cid = int(val)
                except ValueError:
                    cid = 0
                if cid < 1:
                    c.reply(CLIENT_ID_RANGE)
                    return
            elif opt == b"type":
                kind = CLIENT_TYPES.get(val.lower())
                if kind is None:
                    c.reply(unknown_client_type(val))
                    return
            elif opt == b"addr":
                addr = val.decode(errors="replace")
            elif opt == b"laddr":
                laddr = val.decode(errors="replace")
            elif opt == b"user":
                user = val.decode(errors="replace")
                if user not in users:
                    c.reply(no_such_user(val))
                    return
            elif opt == b"skipme":
                yn = val.lower()
                if yn not in (b"yes", b"no"):
                    c.reply(SYNTAX)
                    return
                skipme = yn == b"yes"
            else:
                c.reply(SYNTAX)
                return
            i += 2
    killed = 0
    close_me = False
    for other in _all_clients(c):
        s = other.state
        if ((addr is not None and s.addr != addr) or (laddr is not None and s.laddr != laddr)
                or (kind is not None and _client_type(other) != kind)
                or (cid and s.id != cid) or (user is not None and s.user != user)
                or (other is c and skipme)):
            continue
        if other is c:
            close_me = True
        else:
            other.close_now()
        killed += 1
    if len(argv) == 3:
        c.reply(OK if killed else NO_SUCH_CLIENT)
    else:
        c.reply(encode_int(killed))
    if close_me:
        c.close_after_replies()


def reset(c: Client, argv: list[bytes]) -> None:
    if c.subs is not None:
        c.subs.reset()  # every subscription dropped, without confirmations (as Redis)
    c.mode.leave(c)  # out of MULTI, WATCHed keys forgotten
    c.state.name = b""
    c.state.user = "default"
    c.state.no_evict = False
    reset_read_policy(c)  # READONLY/READWRITE forgotten (handlers.cluster)
    c.reply_mode(b"reset")  # CLIENT REPLY OFF/SKIP cleared, as clearClientConnectionState
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
