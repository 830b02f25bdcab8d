"""Tests for proxy.commands: key extraction, arity, lookup, routing policy, builtin table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.commands.keyspecs import KeySpec, parse_key_spec
from proxy.commands.policy import POLICY, Route, is_blocking_call
from proxy.commands.table import BUILTIN_PATH, CommandSpec, CommandTable

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def table() -> CommandTable:
    return CommandTable.builtin()


def A(cmd: str) -> list[bytes]:
    """argv from a space-separated string; '""' stands for an empty argument."""
    return [b"" if w == '""' else w.encode() for w in cmd.split()]


def keys_of(table: CommandTable, cmd: str) -> list[str]:
    argv = A(cmd)
    spec = table.lookup(argv)
    assert spec is not None, cmd
    return [k.decode() for k in spec.keys(argv)]


# -- key extraction -------------------------------------------------------------------------

# (command line, expected keys in argv order).  Every family the proxy must route correctly.
KEY_CASES: list[tuple[str, list[str]]] = [
    ("GET k", ["k"]),
    ("SET k v", ["k"]),
    ("SET k v EX 10 NX GET", ["k"]),
    ("MSET a 1 b 2 c 3", ["a", "b", "c"]),
    ("MSETNX a 1 b 2", ["a", "b"]),
    ("MGET a b c", ["a", "b", "c"]),
    ("MGET a a", ["a", "a"]),
    ("DEL a b c", ["a", "b", "c"]),
    ("UNLINK a b", ["a", "b"]),
    ("EXISTS a b", ["a", "b"]),
    ("TOUCH a", ["a"]),
    ("ZUNIONSTORE dest 2 k1 k2 WEIGHTS 1 2", ["dest", "k1", "k2"]),
    ("ZUNIONSTORE dest 2 k1 k2 WEIGHTS 1 2 AGGREGATE MAX", ["dest", "k1", "k2"]),
    ("ZINTERSTORE dest 1 k1", ["dest", "k1"]),
    ("ZDIFFSTORE dest 2 k1 k2", ["dest", "k1", "k2"]),
    ("ZUNION 2 k1 k2 WITHSCORES", ["k1", "k2"]),
    ("ZINTER 3 a b c WEIGHTS 1 1 1", ["a", "b", "c"]),
    ("ZDIFF 2 a b", ["a", "b"]),
    ("ZINTERCARD 2 k1 k2 LIMIT 10", ["k1", "k2"]),
    ("SINTERCARD 3 a b c", ["a", "b", "c"]),
    ("SINTERCARD 1 a LIMIT 5", ["a"]),
    ("LMPOP 2 l1 l2 LEFT COUNT 2", ["l1", "l2"]),
    ("ZMPOP 1 z MIN", ["z"]),
    ("BLMPOP 0 2 l1 l2 RIGHT", ["l1", "l2"]),
    ("BZMPOP 1.5 1 z MAX COUNT 3", ["z"]),
    ("EVAL script 2 k1 k2 arg1 arg2", ["k1", "k2"]),
    ("EVAL script 0 arg1", []),
    ("EVAL script 0", []),
    ("EVALSHA abc 1 k1 arg", ["k1"]),
    ("EVAL_RO script 1 k1", ["k1"]),
    ("EVALSHA_RO abc 1 k1", ["k1"]),
    ("FCALL fn 2 k1 k2 a", ["k1", "k2"]),
    ("FCALL fn 0 a b", []),
    ("FCALL_RO fn 1 k", ["k"]),
    ("XREAD STREAMS k1 k2 0 0", ["k1", "k2"]),
    ("XREAD COUNT 10 STREAMS k1 0", ["k1"]),
    ("XREAD COUNT 10 BLOCK 100 STREAMS k1 k2 k3 0 0 0", ["k1", "k2", "k3"]),
    ("xread streams streams streams 0 0", ["streams", "streams"]),
    ("XREADGROUP GROUP g c STREAMS k1 k2 > >", ["k1", "k2"]),
    ("XREADGROUP GROUP g c COUNT 1 BLOCK 0 NOACK STREAMS k1 >", ["k1"]),
    ("XREADGROUP GROUP streams c STREAMS k1 >", ["k1"]),
    ("GEORADIUS g 0 0 1 km", ["g"]),
    ("GEORADIUS g 0 0 1 km STORE dst", ["g", "dst"]),
    ("GEORADIUS g 0 0 1 km WITHDIST STOREDIST dst", ["g", "dst"]),
    ("GEORADIUS g 0 0 1 km STORE d1 STOREDIST d2", ["g", "d1", "d2"]),
    ("GEORADIUSBYMEMBER g m 1 km STORE dst", ["g", "dst"]),
    ("GEORADIUS_RO g 0 0 1 km", ["g"]),
    ("GEOSEARCHSTORE dst src FROMMEMBER m BYRADIUS 1 km", ["dst", "src"]),
    ("SORT k", ["k"]),
    ("SORT k STORE dest", ["k", "dest"]),
    ("SORT k BY w_* LIMIT 0 10 GET # GET o_* DESC ALPHA STORE dest", ["k", "dest"]),
    ("SORT k BY store GET store", ["k"]),
    ("SORT k STORE d1 STORE d2", ["k", "d2"]),
    ("SORT k store", ["k"]),
    ("SORT_RO k BY w_* GET o_*", ["k"]),
    ("MIGRATE host 6379 k 0 1000", ["k"]),
    ("MIGRATE host 6379 k 0 1000 COPY REPLACE", ["k"]),
    ('MIGRATE host 6379 "" 0 1000 KEYS k1 k2', ["k1", "k2"]),
    ('MIGRATE host 6379 "" 0 1000 COPY AUTH keys KEYS k1 k2', ["k1", "k2"]),
    ('MIGRATE host 6379 "" 0 1000 AUTH2 u keys KEYS a keys', ["a", "keys"]),
    ("OBJECT ENCODING k", ["k"]),
    ("object encoding k", ["k"]),
    ("OBJECT FREQ k", ["k"]),
    ("OBJECT IDLETIME k", ["k"]),
    ("OBJECT REFCOUNT k", ["k"]),
    ("OBJECT HELP", []),
    ("MEMORY USAGE k SAMPLES 5", ["k"]),
    ("XINFO STREAM k FULL", ["k"]),
    ("XINFO GROUPS k", ["k"]),
    ("XINFO CONSUMERS k g", ["k"]),
    ("XGROUP CREATE k g $ MKSTREAM", ["k"]),
    ("LMOVE src dst LEFT RIGHT", ["src", "dst"]),
    ("BLMOVE src dst LEFT RIGHT 0", ["src", "dst"]),
    ("RPOPLPUSH src dst", ["src", "dst"]),
    ("BRPOPLPUSH src dst 0", ["src", "dst"]),
    ("RENAME a b", ["a", "b"]),
    ("RENAMENX a b", ["a", "b"]),
    ("SMOVE src dst m", ["src", "dst"]),
    ("BITOP AND dest k1 k2", ["dest", "k1", "k2"]),
    ("BITOP NOT dest k1", ["dest", "k1"]),
    ("PFMERGE dest s1 s2", ["dest", "s1", "s2"]),
    ("PFMERGE dest", ["dest"]),
    ("PFCOUNT a b", ["a", "b"]),
    ("LCS k1 k2 LEN", ["k1", "k2"]),
    ("COPY src dst DB 0 REPLACE", ["src", "dst"]),
    ("SINTERSTORE dest a b", ["dest", "a", "b"]),
    ("SUNIONSTORE dest a", ["dest", "a"]),
    ("SDIFF a b c", ["a", "b", "c"]),
    ("BLPOP a b 0", ["a", "b"]),
    ("BZPOPMIN z1 z2 1.5", ["z1", "z2"]),
    ("WATCH a b", ["a", "b"]),
    ("HSET h f v f2 v2", ["h"]),
    ("EXPIRE k 10 NX", ["k"]),
    ("BITFIELD k GET u8 0", ["k"]),
    ("PFADD hll a b c", ["hll"]),
    ("XADD s * f v", ["s"]),
    ("XCLAIM s g c 0 1-1", ["s"]),
    ("GETEX k PERSIST", ["k"]),
    ("SPUBLISH chan msg", []),  # the shard channel is a NOT_KEY spec
    ("PING", []),
    ("PING hello", []),
    ("INFO server", []),
    ("DBSIZE", []),
    ("TIME", []),
    ("ECHO x", []),
    ("CLIENT LIST", []),
    ("CLUSTER KEYSLOT k", []),
    ("FLUSHALL", []),
]


@pytest.mark.parametrize(("cmd", "expected"), KEY_CASES, ids=[c for c, _ in KEY_CASES])
def test_keys(table: CommandTable, cmd: str, expected: list[str]) -> None:
    assert keys_of(table, cmd) == expected


def test_key_positions_are_indices(table: CommandTable) -> None:
    argv = A("ZUNIONSTORE dest 2 k1 k2 WEIGHTS 1 2")
    spec = table.lookup(argv)
    assert spec is not None
    assert spec.key_positions(argv) == [1, 3, 4]
    argv = A("MSET a 1 b 2")
    assert table.lookup(argv).key_positions(argv) == [1, 3]  # type: ignore[union-attr]
    argv = A("XREAD COUNT 1 STREAMS k1 k2 0 0")
    assert table.lookup(argv).key_positions(argv) == [4, 5]  # type: ignore[union-attr]


# Short, odd and garbage argv must never raise: the backend is the one to refuse them.
MALFORMED = [
    "GET",
    "MSET",
    "MSET a",
    "MSET a 1 b",
    "MGET",
    "DEL",
    "ZUNIONSTORE",
    "ZUNIONSTORE dest",
    "ZUNIONSTORE dest 5 a b",
    "ZUNIONSTORE dest -1 a",
    "ZUNIONSTORE dest x a",
    "ZUNIONSTORE dest 99999999999999999999999999 a",
    "EVAL",
    "EVAL s",
    "EVAL s 3 a",
    "EVAL s +1 a",
    "EVAL s 1_0 a",
    "LMPOP",
    "BLMPOP 0",
    "XREAD",
    "XREAD STREAMS",
    "XREAD STREAMS a",
    "XREAD STREAMS a b 0",
    "XREADGROUP GROUP",
    "XREADGROUP GROUP g c STREAMS",
    "GEORADIUS g 0 0 1 km STORE",
    "SORT",
    "SORT k STORE",
    "SORT k LIMIT",
    "MIGRATE",
    "MIGRATE h p",
    "MIGRATE h p k 0 0 KEYS a",
    'MIGRATE h p "" 0 0 KEYS',
    'MIGRATE h p "" 0 0 AUTH',
    "OBJECT",
    "OBJECT ENCODING",
    "MEMORY USAGE",
    "BITOP AND",
    "LMOVE a",
    "RENAME a",
]


@pytest.mark.parametrize("cmd", MALFORMED)
def test_malformed_argv_never_raises(table: CommandTable, cmd: str) -> None:
    argv = A(cmd)
    spec = table.lookup(argv)
    assert spec is not None
    positions = spec.key_positions(argv)
    assert positions == sorted(set(positions))
    assert all(0 < p < len(argv) for p in positions)


def test_malformed_specifics(table: CommandTable) -> None:
    # numkeys past the end: that spec contributes nothing, the destination is still found.
    assert keys_of(table, "ZUNIONSTORE dest 5 a b") == ["dest"]
    assert keys_of(table, "EVAL s 3 a") == []
    assert keys_of(table, "MSET a 1 b") == ["a", "b"]
    assert keys_of(table, "XREAD STREAMS a b 0") == ["a"]
    assert keys_of(table, "SORT k STORE") == ["k"]
    # Redis refuses KEYS with a non-empty key argument, and reports no keys for it.
    assert keys_of(table, "MIGRATE h p k 0 0 KEYS a") == []


def test_every_command_survives_short_argv(table: CommandTable) -> None:
    for spec in table.iter_specs():
        words = [w.encode() for w in spec.name.split("|")]
        for extra in ([], [b"x"], [b"1"], [b"x", b"1"], [b"STREAMS"], [b"1", b"x", b"y"]):
            argv = words + extra
            positions = spec.key_positions(argv)
            assert all(len(words) <= p < len(argv) for p in positions), (spec.name, argv)


# -- key-spec arithmetic on synthetic specs -------------------------------------------------


def test_keyword_search_backwards() -> None:
    # MIGRATE's second spec: KEYS searched from the 2nd-to-last argument backwards.
    spec = KeySpec(("keyword", b"KEYS", -2), ("range", -1, 1, 0), frozenset({"RW"}))
    assert spec.positions(A('migrate h p "" 0 0 keys a b')) == [7, 8]
    assert spec.positions(A("migrate h p k 0 0")) == []
    # The last argument is never taken for the keyword (nothing could follow it).
    assert spec.positions(A("migrate h p k 0 0 KEYS")) == []


def test_keyword_search_forwards_finds_first() -> None:
    spec = KeySpec(("keyword", b"STREAMS", 1), ("range", -1, 1, 2))
    assert spec.positions(A("xread STREAMS STREAMS x 0 0")) == [2, 3]


def test_range_with_step_and_negative_lastkey() -> None:
    spec = KeySpec(("index", 1), ("range", -1, 2, 0))
    assert spec.positions(A("mset a 1 b 2")) == [1, 3]
    spec = KeySpec(("index", 1), ("range", -2, 1, 0))
    assert spec.positions(A("blpop a b 0")) == [1, 2]


def test_keynum_with_step() -> None:
    spec = KeySpec(("index", 1), ("keynum", 0, 1, 2))
    assert spec.positions(A("cmd 2 k1 v1 k2 v2")) == [2, 4]


def test_unknown_spec_is_invalid() -> None:
    spec = KeySpec(("unknown",), ("unknown",))
    assert spec.incomplete
    assert spec.positions(A("sort k store d")) is None


def test_parse_key_spec_resp2_and_resp3() -> None:
    resp2 = [
        b"flags",
        [b"RO", b"access"],
        b"begin_search",
        [b"type", b"keyword", b"spec", [b"keyword", b"STREAMS", b"startfrom", 1]],
        b"find_keys",
        [b"type", b"range", b"spec", [b"lastkey", -1, b"keystep", 1, b"limit", 2]],
    ]
    resp3 = {
        b"flags": {b"RO", b"access"},
        b"begin_search": {
            b"type": b"keyword",
            b"spec": {b"keyword": b"STREAMS", b"startfrom": 1},
        },
        b"find_keys": {b"type": b"range", b"spec": {b"lastkey": -1, b"keystep": 1, b"limit": 2}},
    }
    expected = KeySpec(("keyword", b"STREAMS", 1), ("range", -1, 1, 2), frozenset({"RO", "ACCESS"}))
    assert parse_key_spec(resp2) == expected
    assert parse_key_spec(resp3) == expected


def test_legacy_reply_without_key_specs() -> None:
    # A Redis 6 style entry: no key specs, only (first, last, step).
    table = CommandTable.from_command_reply(
        [
            [b"get", 2, [b"readonly", b"fast"], 1, 1, 1],
            [b"mset", -3, [b"write"], 1, -1, 2],
            [b"ping", -1, [b"fast"], 0, 0, 0],
        ]
    )
    get = table.lookup([b"GET", b"k"])
    assert get is not None and get.key1 and get.route is Route.KEYED
    mset = table.lookup(A("MSET a 1 b 2"))
    assert mset is not None and mset.keys(A("MSET a 1 b 2")) == [b"a", b"b"]
    assert mset.route is Route.SPLIT
    ping = table.lookup([b"PING"])
    assert ping is not None and ping.route is Route.LOCAL


def test_module_command_default_rule() -> None:
    spec_ = [
        b"flags",
        [b"RW", b"update"],
        b"begin_search",
        [b"type", b"index", b"spec", [b"index", 1]],
        b"find_keys",
        [b"type", b"range", b"spec", [b"lastkey", 0, b"keystep", 1, b"limit", 0]],
    ]
    table = CommandTable.from_command_reply(
        [
            [b"json.set", -4, [b"write"], 1, 1, 1, [], [], [spec_], []],
            [b"mod.stats", 1, [b"admin"], 0, 0, 0, [], [], [], []],
        ]
    )
    js = table.lookup(A("JSON.SET k $ 1"))
    assert js is not None and js.route is Route.KEYED and js.key1
    st = table.lookup([b"MOD.STATS"])
    assert st is not None and st.route is Route.UNSUPPORTED
    assert st.reason == "no key to route by"


# -- arity, lookup --------------------------------------------------------------------------


def test_arity(table: CommandTable) -> None:
    get = table.get("get")
    assert get is not None and get.arity == 2
    assert get.check_arity(2)
    assert not get.check_arity(1) and not get.check_arity(3)
    mset = table.get("mset")
    assert mset is not None and mset.arity == -3
    assert not mset.check_arity(2) and mset.check_arity(3) and mset.check_arity(9)
    enc = table.get("object|encoding")
    assert enc is not None and enc.arity == 3 and enc.check_arity(3)
    ping = table.get("ping")
    assert ping is not None and ping.check_arity(1) and ping.check_arity(2)


def test_lookup_case_insensitive(table: CommandTable) -> None:
    specs = {id(table.lookup([n, b"k"])) for n in (b"get", b"GET", b"Get", b"gEt")}
    assert len(specs) == 1
    spec = table.lookup([b"gEt", b"k"])
    assert spec is not None and spec.name == "get"
    # A second lookup of an odd spelling is served from the bytes cache.
    assert table.lookup([b"gEt", b"k"]) is spec
    assert table._by_bytes[b"gEt"] is spec


def test_lookup_cache_is_bounded() -> None:
    table = CommandTable.builtin()
    table._cache_room = 2
    for name in (b"gEt", b"GeT", b"geT", b"GEt"):
        assert table.lookup([name, b"k"]) is not None
    assert b"gEt" in table._by_bytes and b"GeT" in table._by_bytes
    assert b"geT" not in table._by_bytes and b"GEt" not in table._by_bytes


def test_lookup_unknown(table: CommandTable) -> None:
    assert table.lookup([b"nosuchcommand"]) is None
    assert table.lookup([b"NOSUCHCOMMAND", b"x"]) is None
    assert table.lookup([]) is None
    assert table.get("nosuchcommand") is None
    assert table.raw_info("nosuchcommand") is None


def test_lookup_subcommands(table: CommandTable) -> None:
    for argv0, argv1 in ((b"OBJECT", b"ENCODING"), (b"object", b"encoding"), (b"Object", b"eNc")):
        spec = table.lookup([argv0, argv1 + (b"oding" if argv1 == b"eNc" else b""), b"k"])
        assert spec is not None and spec.name == "object|encoding"
    spec = table.lookup(A("xinfo stream k"))
    assert spec is not None and spec.name == "xinfo|stream"
    # No subcommand: the container itself, which fails its arity check like in Redis.
    obj = table.lookup([b"OBJECT"])
    assert obj is not None and obj.is_container and obj.name == "object"
    assert not obj.check_arity(1)
    # Unknown subcommand: the container again (the caller says "unknown subcommand").
    bogus = table.lookup([b"OBJECT", b"BOGUS", b"k"])
    assert bogus is obj
    assert obj.subcommands is not None and "encoding" in obj.subcommands
    assert table.get("OBJECT|ENCODING") is obj.subcommands["encoding"]


def test_raw_info(table: CommandTable) -> None:
    info = table.raw_info("get")
    assert info is not None
    assert info[:6] == [b"get", 2, [b"readonly", b"fast"], 1, 1, 1]
    sub = table.raw_info("object|encoding")
    assert sub is not None and sub[0] == b"object|encoding" and sub[1] == 3
    container = table.raw_info("OBJECT")
    assert container is not None and sub in container[9]


def test_names_count_len(table: CommandTable) -> None:
    names = table.names()
    assert names == sorted(names)
    assert "get" in names and "object" in names and "object|encoding" not in names
    assert len(table) == table.count() == len(names) == 240
    assert "get" in table and "object|encoding" in table and "nope" not in table


def test_builtin_json_header() -> None:
    doc = json.loads(BUILTIN_PATH.read_text())
    assert doc["redis_version"] == "7.0.15"
    assert doc["command_count"] == len(doc["commands"]) == 240


# -- key1 fast path -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["get", "set", "incr", "lpush", "hset", "expire", "getex", "xadd", "zadd", "bitfield", "pfadd"],
)
def test_key1_true(table: CommandTable, name: str) -> None:
    spec = table.get(name)
    assert spec is not None and spec.key1


@pytest.mark.parametrize(
    "name",
    [
        "mget",
        "mset",
        "del",
        "georadius",
        "sort",
        "sort_ro",
        "eval",
        "rename",
        "lcs",
        "blpop",
        "ping",
        "spublish",
        "object|encoding",
        "xread",
        "migrate",
    ],
)
def test_key1_false(table: CommandTable, name: str) -> None:
    spec = table.get(name)
    assert spec is not None and not spec.key1


def test_key1_consistent_with_key_positions(table: CommandTable) -> None:
    for spec in table.iter_specs():
        if spec.key1:
            argv = [spec.name.encode(), b"k", b"a", b"b", b"c"]
            assert spec.key_positions(argv) == [1], spec.name


# -- routing policy -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "route", "reason"),
    [
        ("get", Route.KEYED, ""),
        ("set", Route.KEYED, ""),
        ("georadius", Route.KEYED, ""),
        ("geosearchstore", Route.KEYED, ""),
        ("xadd", Route.KEYED, ""),
        ("xread", Route.KEYED, ""),
        ("xreadgroup", Route.KEYED, ""),
        ("bitfield", Route.KEYED, ""),
        ("pfadd", Route.KEYED, ""),
        ("lcs", Route.KEYED, ""),
        ("copy", Route.KEYED, ""),
        ("sort", Route.KEYED, ""),
        ("eval", Route.KEYED, ""),
        ("evalsha", Route.KEYED, ""),
        ("fcall", Route.KEYED, ""),
        ("fcall_ro", Route.KEYED, ""),
        ("sintercard", Route.KEYED, ""),
        ("zunionstore", Route.KEYED, ""),
        ("mget", Route.SPLIT, ""),
        ("mset", Route.SPLIT, ""),
        ("del", Route.SPLIT, ""),
        ("unlink", Route.SPLIT, ""),
        ("exists", Route.SPLIT, ""),
        ("touch", Route.SPLIT, ""),
        ("ping", Route.LOCAL, ""),
        ("echo", Route.LOCAL, ""),
        ("hello", Route.LOCAL, ""),
        ("select", Route.LOCAL, ""),
        ("info", Route.LOCAL, ""),
        ("dbsize", Route.LOCAL, ""),
        ("time", Route.LOCAL, ""),
        ("client|setname", Route.LOCAL, ""),
        ("client|list", Route.LOCAL, ""),
        ("command|info", Route.LOCAL, ""),
        ("command", Route.LOCAL, ""),
        ("cluster|keyslot", Route.LOCAL, ""),
        ("script|load", Route.LOCAL, ""),
        ("blpop", Route.BLOCKING, ""),
        ("blmove", Route.BLOCKING, ""),
        ("bzmpop", Route.BLOCKING, ""),
        ("wait", Route.BLOCKING, ""),
        ("multi", Route.LOCAL, ""),
        ("watch", Route.LOCAL, ""),
        ("exec", Route.LOCAL, ""),
        ("subscribe", Route.LOCAL, ""),
        ("spublish", Route.LOCAL, ""),
        ("pubsub|channels", Route.LOCAL, ""),
        ("monitor", Route.UNSUPPORTED, "administrative"),
        ("keys", Route.LOCAL, ""),
        ("scan", Route.LOCAL, ""),
        ("flushall", Route.LOCAL, ""),
        ("move", Route.UNSUPPORTED, "the proxy serves DB 0 only"),
        ("config|get", Route.LOCAL, ""),
        ("acl|whoami", Route.UNSUPPORTED,
         "proxy users are set in its config (password, username)"),
        ("function|load", Route.LOCAL, ""),
        ("memory|doctor", Route.UNSUPPORTED, "administrative"),
        ("memory|stats", Route.UNSUPPORTED, "administrative"),
        ("object|help", Route.UNSUPPORTED, "administrative"),
        ("debug", Route.UNSUPPORTED, "administrative"),
        ("shutdown", Route.UNSUPPORTED, "it would stop one backend; stop the proxy with SIGTERM"),
        ("memory|usage", Route.KEYED, ""),
        ("object|encoding", Route.KEYED, ""),
        ("object|freq", Route.KEYED, ""),
        ("object|idletime", Route.KEYED, ""),
        ("object|refcount", Route.KEYED, ""),
        ("xinfo|stream", Route.KEYED, ""),
        ("xgroup|create", Route.KEYED, ""),
        ("migrate", Route.UNSUPPORTED, "use the keyed form"),
        ("asking", Route.LOCAL, ""),
        ("pfselftest", Route.UNSUPPORTED, "no key to route by"),
    ],
)
def test_routing_policy(table: CommandTable, name: str, route: Route, reason: str) -> None:
    spec = table.get(name)
    assert spec is not None, name
    assert (spec.route, spec.reason) == (route, reason)


def test_every_keyless_command_is_not_keyed(table: CommandTable) -> None:
    for spec in table.iter_specs():
        if spec.route in (Route.KEYED, Route.SPLIT):
            assert spec.has_keys, spec.name
        if spec.route is Route.UNSUPPORTED:
            assert spec.reason, spec.name


def test_policy_names_are_lowercase() -> None:
    assert all(name == name.lower() for name in POLICY)


# -- blocking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "blocking"),
    [
        ("BLPOP a 0", True),
        ("BLMPOP 0 1 a LEFT", True),
        ("BZPOPMIN z 0", True),
        ("XREAD STREAMS k 0", False),
        ("XREAD COUNT 5 STREAMS k 0", False),
        ("XREAD BLOCK 0 STREAMS k 0", True),
        ("xread count 5 block 100 streams k 0", True),
        ("XREAD STREAMS block 0", False),
        ("XREAD COUNT block STREAMS k 0", False),
        ("XREADGROUP GROUP g c STREAMS k >", False),
        ("XREADGROUP GROUP block block STREAMS k >", False),
        ("XREADGROUP GROUP g c COUNT 1 NOACK BLOCK 10 STREAMS k >", True),
        ("XREADGROUP GROUP g c STREAMS block >", False),
        ("GET k", False),
        ("WAIT 1 0", False),  # not flagged "blocking" by Redis; refused by policy instead
    ],
)
def test_is_blocking_call(table: CommandTable, cmd: str, blocking: bool) -> None:
    argv = A(cmd)
    spec = table.lookup(argv)
    assert spec is not None
    assert is_blocking_call(spec, argv) is blocking


def test_specs_are_hashable_and_frozen(table: CommandTable) -> None:
    spec = table.get("get")
    assert isinstance(spec, CommandSpec)
    hash(spec)
    hash(table.get("object"))
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Hidden keys (SORT BY/GET patterns, COPY DB): commands.hidden
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "slot"), [
    (b"w_*", -1), (b"w_?", -1), (b"w_[ab]", -1), (b"w\\_x", -1), (b"{u}w_*", "u"),
    (b"w_{u}*", "u"), (b"w_*{u}", -1), (b"{u*}x", -1), (b"{}{u}x", "{}{u}x"),
    (b"{}x*", -1), (b"plain", "plain"), (b"{u}h_*->f", "u"), (b"{u", "{u"),
])
def test_pattern_slot_is_redis_pattern_hash_slot(pattern: bytes, slot: int | str) -> None:
    from binascii import crc_hqx

    from proxy.commands.hidden import pattern_slot
    want = slot if isinstance(slot, int) else crc_hqx(slot.encode(), 0) & 16383
    assert pattern_slot(pattern, 16383) == want


def test_sort_ro_is_not_on_the_fast_path(table: CommandTable) -> None:
    # SORT_RO has one key at argv[1], but its patterns are checked by dispatch.
    assert b"SORT_RO" not in table.fast_arity and b"sort_ro" not in table.fast_arity
    assert b"GET" in table.fast_arity
