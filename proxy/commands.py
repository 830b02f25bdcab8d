"""The command table: arity, flags, key positions and routing policy of every command (sans-IO).

The table is built from a backend's own `COMMAND` reply (Redis 7 format), so every command the
backend knows -- modules included -- is routed by the backend's own key specs.  When no backend
answers at start-up, `CommandTable.builtin()` loads `proxy/data/commands.json`, a verbatim dump of
redis-server 7.0.15's `COMMAND` reply written by `scripts/gen_command_table.py`.

Key positions follow https://redis.io/docs/reference/key-specs/ with the arithmetic of Redis's
`getKeysUsingKeySpecs` (src/db.c).  Where Redis itself gives up on the specs (an `unknown` begin
search or an INCOMPLETE spec) and falls back to a hand-written `*GetKeys` function, we do the same
for the built-in commands that need it (SORT, MIGRATE); anything else with an unusable spec keeps
the keys found by its other specs (Redis's GET_KEYSPEC_RETURN_PARTIAL behaviour) -- so e.g.
`PFMERGE dest` yields [dest] where Redis 7.0's COMMAND GETKEYS, discarding every spec as soon as
one is out of range, yields nothing.

`POLICY` below is the one place where the proxy's per-command behaviour is decided.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

__all__ = [
    "BUILTIN_PATH",
    "POLICY",
    "CommandSpec",
    "CommandTable",
    "KeySpec",
    "Route",
    "is_blocking_call",
]

BUILTIN_PATH = Path(__file__).parent / "data" / "commands.json"


class Route(enum.IntEnum):
    KEYED = 1  # forward to the group owning its key(s); all keys must share one slot
    SPLIT = 2  # split per group by the proxy, replies merged (MGET MSET DEL UNLINK EXISTS TOUCH)
    LOCAL = 3  # answered by the proxy itself
    UNSUPPORTED = 4  # refused with "-ERR command 'X' is not supported by the proxy"


# --------------------------------------------------------------------------------------------
# Routing policy
# --------------------------------------------------------------------------------------------

_BLOCKING = "blocking commands"
_TRANSACTIONS = "transactions"
_PUBSUB = "pub/sub"
_KEYSPACE = "keyspace-wide"
_ADMIN = "administrative"
_NO_KEY = "no key to route by"


def _policy(route: Route, reason: str, names: str) -> dict[str, tuple[Route, str]]:
    return {name: (route, reason) for name in names.split()}


# name -> (route, reason).  Names are lowercase; "container|sub" entries override the container's
# entry, which overrides the default rule (see `route_for`).  Commands not named here get the
# default rule: KEYED if they have keys, else UNSUPPORTED "no key to route by".
POLICY: dict[str, tuple[Route, str]] = {
    **_policy(Route.SPLIT, "", "mget mset del unlink exists touch"),
    # CLUSTER: the proxy answers KEYSLOT/INFO/SLOTS itself; SCRIPT: the proxy fans LOAD/EXISTS/FLUSH
    # out to every group itself, so EVALSHA works whichever group a key lands on.
    **_policy(
        Route.LOCAL,
        "",
        "ping echo quit auth hello select client command info dbsize time reset readonly "
        "readwrite cluster script",
    ),
    # XREAD/XREADGROUP are deliberately absent: they stay KEYED and are refused only when they
    # carry a BLOCK argument (see `is_blocking_call`).
    **_policy(
        Route.UNSUPPORTED,
        _BLOCKING,
        "blpop brpop brpoplpush blmove blmpop bzpopmin bzpopmax bzmpop wait waitaof",
    ),
    **_policy(Route.UNSUPPORTED, _TRANSACTIONS, "multi exec discard watch unwatch"),
    **_policy(
        Route.UNSUPPORTED,
        _PUBSUB,
        "subscribe unsubscribe psubscribe punsubscribe ssubscribe sunsubscribe publish spublish "
        "pubsub monitor",
    ),
    **_policy(Route.UNSUPPORTED, _KEYSPACE, "keys scan randomkey flushall flushdb swapdb move"),
    # MEMORY USAGE and OBJECT ENCODING/FREQ/IDLETIME/REFCOUNT are not listed: they have a key and
    # fall through to KEYED.
    **_policy(
        Route.UNSUPPORTED,
        _ADMIN,
        "config debug save bgsave bgrewriteaof lastsave shutdown slaveof replicaof sync psync "
        "replconf slowlog latency acl module function failover lolwut role memory|doctor "
        "memory|stats memory|malloc-stats memory|purge object|help",
    ),
    # The proxy migrates slots itself; a client-driven MIGRATE would bypass the slot map.
    **_policy(Route.UNSUPPORTED, "use the keyed form", "migrate"),
}


def route_for(name: str, container: str | None, has_keys: bool) -> tuple[Route, str]:
    """The (route, reason) of command `name` ("object|encoding" for a subcommand)."""
    entry = POLICY.get(name)
    if entry is None and container is not None:
        entry = POLICY.get(container)
    if entry is not None:
        return entry
    return (Route.KEYED, "") if has_keys else (Route.UNSUPPORTED, _NO_KEY)


# --------------------------------------------------------------------------------------------
# Key specs
# --------------------------------------------------------------------------------------------

# begin_search, as in the COMMAND reply:
#   ("index", pos)                       the first key is at absolute argv position `pos`
#   ("keyword", KEYWORD, startfrom)      the first key follows KEYWORD (upper-case bytes, matched
#                                        case-insensitively), searched from `startfrom`; a negative
#                                        `startfrom` searches backwards from argc+startfrom
#   ("unknown",)                         Redis cannot describe it (the command has a getkeys proc)
BeginIndex: TypeAlias = tuple[Literal["index"], int]
BeginKeyword: TypeAlias = tuple[Literal["keyword"], bytes, int]
BeginUnknown: TypeAlias = tuple[Literal["unknown"]]
BeginSearch: TypeAlias = BeginIndex | BeginKeyword | BeginUnknown

# find_keys, relative to the position `first` found by begin_search:
#   ("range", lastkey, keystep, limit)   keys are first..last step keystep, last = first+lastkey if
#                                        lastkey >= 0, else counted from the end of argv (-1 = last
#                                        arg); with lastkey < 0 and limit > 1 only 1/limit of the
#                                        remaining args are keys (XREAD ... STREAMS k1 k2 id1 id2)
#   ("keynum", keynumidx, firstkey, keystep)
#                                        argv[first+keynumidx] is the number of keys, which start at
#                                        first+firstkey
#   ("unknown",)
FindRange: TypeAlias = tuple[Literal["range"], int, int, int]
FindKeynum: TypeAlias = tuple[Literal["keynum"], int, int, int]
FindUnknown: TypeAlias = tuple[Literal["unknown"]]
FindKeys: TypeAlias = FindRange | FindKeynum | FindUnknown

_UNKNOWN_BEGIN: BeginUnknown = ("unknown",)
_UNKNOWN_FIND: FindUnknown = ("unknown",)


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One parsed Redis 7 key spec.

    `flags` are upper-cased (the reply mixes "RW" with "access"): RO RW OW RM ACCESS UPDATE INSERT
    DELETE NOT_KEY INCOMPLETE VARIABLE_FLAGS.
    """

    begin: BeginSearch
    find: FindKeys
    flags: frozenset[str] = frozenset()

    @property
    def not_key(self) -> bool:
        """A 'fake' key (e.g. the shard channel of SPUBLISH): never routed by."""
        return "NOT_KEY" in self.flags

    @property
    def incomplete(self) -> bool:
        """Redis can't find every key with this spec alone (it falls back to its getkeys proc)."""
        return "INCOMPLETE" in self.flags or self.begin[0] == "unknown" or self.find[0] == "unknown"

    def positions(self, argv: list[bytes]) -> list[int] | None:
        """Key positions of this spec in `argv`; [] if its keyword is absent; None if invalid.

        "Invalid" is Redis's `invalid_spec`: an unknown spec, an unparsable key count, or a range
        outside argv -- i.e. a command the backend will refuse (syntax/arity), or one whose keys
        can't be described by specs.
        """
        argc = len(argv)
        begin = self.begin
        kind = begin[0]
        if kind == "index":
            first: int = begin[1]  # type: ignore[misc]
        elif kind == "keyword":
            keyword: bytes = begin[1]  # type: ignore[misc]
            startfrom: int = begin[2]  # type: ignore[misc]
            # Redis's loop bounds, exactly: forwards from startfrom up to (excluding) argc-1,
            # backwards from argc+startfrom down to (excluding) 1.  A keyword in the last slot
            # could not be followed by a key anyway.
            scan = range(startfrom, argc - 1) if startfrom > 0 else range(argc + startfrom, 1, -1)
            first = 0
            for i in scan:
                if i >= argc or i < 1:
                    break
                if argv[i].upper() == keyword:
                    first = i + 1
                    break
            if not first:
                return []
        else:
            return None

        find = self.find
        kind = find[0]
        if kind == "range":
            _, lastkey, step, limit = find  # type: ignore[misc]
            if lastkey >= 0:
                last = first + lastkey
            elif limit <= 1:  # 0 and 1 both mean "no limit"
                last = argc + lastkey
            else:
                last = first + ((argc - first) // limit + lastkey)
        elif kind == "keynum":
            _, keynumidx, firstkey, step = find  # type: ignore[misc]
            idx = first + keynumidx
            if idx >= argc or idx < 0:
                return None
            raw = argv[idx]
            # Redis's string2ll accepts only plain decimal digits ("-" aside, and a negative
            # count is invalid too); Python's int() would also take " 2", "+2" and "1_0".
            if not raw.isdigit() or len(raw) > 18:
                return None
            numkeys = int(raw)
            first += firstkey
            # numkeys keys, `step` apart.  Redis 7.0 computes first+numkeys-1 here, which is only
            # right for keystep 1 (all built-in commands); the spec's meaning, and later Redis
            # (redis/redis#15408), multiply by the step.
            last = first + (numkeys - 1) * step
        else:
            return None

        # Out of bounds means a syntax error (or numkeys == 0, which has no keys): like Redis,
        # report the spec as invalid rather than guess.  step <= 0 would never terminate.
        if last >= argc or last < first or first >= argc or step <= 0:
            return None
        return list(range(first, last + 1, step))


def _upper(b: bytes | str) -> str:
    return (b.decode() if isinstance(b, bytes) else b).upper()


def _as_map(pairs: Any) -> dict[str, Any]:
    """A RESP2 flat [k, v, k, v...] list (or a RESP3 map) as a dict with str keys."""
    items = pairs.items() if isinstance(pairs, dict) else zip(pairs[::2], pairs[1::2], strict=False)
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in items}


def parse_key_spec(raw: Any) -> KeySpec:
    """Parse one key spec of a COMMAND reply (`flags`, `begin_search`, `find_keys` ...)."""
    spec = _as_map(raw)
    flags = frozenset(_upper(f) for f in spec.get("flags") or ())

    begin: BeginSearch = _UNKNOWN_BEGIN
    bs = _as_map(spec.get("begin_search") or [])
    bs_type = _upper(bs.get("type", b"unknown")).lower()
    bs_spec = _as_map(bs.get("spec") or [])
    if bs_type == "index" and "index" in bs_spec:
        begin = ("index", int(bs_spec["index"]))
    elif bs_type == "keyword" and "keyword" in bs_spec:
        kw = bs_spec["keyword"]
        kw_b = kw if isinstance(kw, bytes) else str(kw).encode()
        begin = ("keyword", kw_b.upper(), int(bs_spec.get("startfrom", 1)))

    find: FindKeys = _UNKNOWN_FIND
    fk = _as_map(spec.get("find_keys") or [])
    fk_type = _upper(fk.get("type", b"unknown")).lower()
    fk_spec = _as_map(fk.get("spec") or [])
    if fk_type == "range" and "lastkey" in fk_spec:
        find = (
            "range",
            int(fk_spec["lastkey"]),
            int(fk_spec.get("keystep", 1)),
            int(fk_spec.get("limit", 0)),
        )
    elif fk_type == "keynum" and "keynumidx" in fk_spec:
        find = (
            "keynum",
            int(fk_spec["keynumidx"]),
            int(fk_spec.get("firstkey", 1)),
            int(fk_spec.get("keystep", 1)),
        )
    return KeySpec(begin, find, flags)


def legacy_key_spec(first: int, last: int, step: int) -> KeySpec:
    """The spec equivalent of a pre-7 (first, last, step) triple, for replies without key specs."""
    lastkey = last - first if last >= 0 else last
    return KeySpec(("index", first), ("range", lastkey, max(step, 1), 0))


# --------------------------------------------------------------------------------------------
# Redis's hand-written getkeys procs, for built-in commands whose specs are incomplete
# --------------------------------------------------------------------------------------------


def _sort_keys(argv: list[bytes]) -> list[int]:
    """Redis's sortGetKeys: the sorted key, plus the *last* STORE destination.

    STORE can appear anywhere among the options, so Redis's key spec for it is 'unknown'; the
    options with arguments are skipped so that e.g. `BY store` isn't taken for a STORE.
    """
    argc = len(argv)
    if argc < 2:
        return []
    store = 0
    i = 2
    while i < argc:
        opt = argv[i].lower()
        if opt == b"limit":
            i += 2
        elif opt in (b"get", b"by"):
            i += 1
        elif opt == b"store" and i + 1 < argc:
            store = i + 1
        i += 1
    return [1, store] if store else [1]


_MIGRATE_SKIP = {b"copy": 0, b"replace": 0, b"auth": 1, b"auth2": 2}


def _migrate_keys(argv: list[bytes]) -> list[int]:
    """Redis's migrateGetKeys: argv[3], or -- when argv[3] is "" -- every arg after KEYS.

    The spec searching KEYS backwards is INCOMPLETE because a password after AUTH may itself be
    "KEYS"; walking the options forwards (skipping AUTH/AUTH2 arguments) is exact.
    """
    argc = len(argv)
    if argc < 4:
        return []
    i = 6
    while i < argc:
        opt = argv[i].lower()
        if opt == b"keys":
            if argv[3]:
                return []  # Redis refuses KEYS with a non-empty key argument
            return list(range(i + 1, argc))
        i += _MIGRATE_SKIP.get(opt, 0) + 1
    return [3]


# Used only when the command's specs are incomplete, as Redis does: a future Redis describing
# these commands fully is then routed by its specs.
_NATIVE_GETKEYS: dict[str, Callable[[list[bytes]], list[int]]] = {
    "sort": _sort_keys,
    "migrate": _migrate_keys,
}


# --------------------------------------------------------------------------------------------
# Command specs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """Everything the proxy needs to know about one command or subcommand."""

    name: str  # lowercase; "object|encoding" for a subcommand
    arity: int  # Redis convention: > 0 exact argc, < 0 at least -arity (argv[0] included)
    flags: frozenset[str]  # lowercase command flags: "write", "readonly", "blocking", ...
    key_specs: tuple[KeySpec, ...]
    route: Route
    reason: str = ""  # for UNSUPPORTED: a short why
    # True iff the command always has exactly one key, argv[1]: the proxy's fast path skips key
    # extraction for these (GET, SET, INCR, HSET, EXPIRE ...).
    key1: bool = False
    # Container commands (OBJECT, XINFO, CLIENT ...): subcommand specs by lowercase subcommand name.
    subcommands: dict[str, CommandSpec] | None = field(default=None, hash=False)
    # Derived, for key_positions: the specs that name real keys, and Redis's getkeys-proc fallback.
    _specs: tuple[KeySpec, ...] = field(init=False, repr=False, compare=False, hash=False)
    _native: Callable[[list[bytes]], list[int]] | None = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        specs = tuple(s for s in self.key_specs if not s.not_key)
        object.__setattr__(self, "_specs", specs)
        object.__setattr__(self, "_native", _native_getkeys(self.name, specs))

    @property
    def has_keys(self) -> bool:
        """Whether the command can name keys at all (specs marked NOT_KEY don't count)."""
        return bool(self._specs)

    @property
    def is_container(self) -> bool:
        return self.subcommands is not None

    def check_arity(self, argc: int) -> bool:
        arity = self.arity
        return argc == arity if arity > 0 else argc >= -arity

    def key_positions(self, argv: list[bytes]) -> list[int]:
        """Indices into argv of every key, ascending and distinct (all key specs unioned).

        Never raises: on short or malformed argv it returns the keys it can find (a spec that
        can't be applied contributes nothing -- the backend will reject such a command anyway).
        """
        specs = self._specs
        native = self._native
        if len(specs) == 1 and native is None:
            return specs[0].positions(argv) or []
        out: list[int] = []
        for spec in specs:
            found = spec.positions(argv)
            if native is not None and (found is None or (found and "INCOMPLETE" in spec.flags)):
                # Exactly when Redis's getKeysUsingKeySpecs gives up (an unusable spec, or an
                # INCOMPLETE one that matched), it switches to the command's getkeys proc.
                return native(argv)
            if found:
                out.extend(found)
        if len(specs) > 1 and out:
            # Specs are listed in argv order for most commands, but not all (e.g. GEORADIUS
            # STORE vs STOREDIST), and MIGRATE-like specs may overlap.
            out = sorted(set(out))
        return out

    def keys(self, argv: list[bytes]) -> list[bytes]:
        return [argv[i] for i in self.key_positions(argv)]


def _native_getkeys(
    name: str, specs: tuple[KeySpec, ...]
) -> Callable[[list[bytes]], list[int]] | None:
    """Redis's getkeys-proc fallback for `name`, if its (real) specs can't find every key."""
    if any(s.incomplete for s in specs):
        return _NATIVE_GETKEYS.get(name)
    return None


def _is_key1(name: str, specs: tuple[KeySpec, ...]) -> bool:
    real = tuple(s for s in specs if not s.not_key)
    return (
        _native_getkeys(name, real) is None
        and len(real) == 1
        and real[0].begin == ("index", 1)
        and real[0].find[:2] == ("range", 0)
    )


_XREAD_OPTS_START = {"xread": 1, "xreadgroup": 4}  # XREADGROUP GROUP g c [options] STREAMS ...


def is_blocking_call(spec: CommandSpec, argv: list[bytes]) -> bool:
    """Whether this call would block: a "blocking" command, except that XREAD/XREADGROUP block
    only when given a BLOCK option (a stream or group named "block" doesn't count)."""
    if "blocking" not in spec.flags:
        return False
    start = _XREAD_OPTS_START.get(spec.name)
    if start is None:
        return True
    i, argc = start, len(argv)
    while i < argc:
        opt = argv[i].lower()
        if opt == b"streams":
            return False
        if opt == b"block":
            return True
        i += 2 if opt == b"count" else 1  # skip COUNT's value; NOACK has none
    return False


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------

# Bound on the case-variant cache: clients could otherwise grow it with "gEt", "GeT", ...
_CACHE_LIMIT = 4096


def _to_str(b: Any) -> str:
    return b.decode("utf-8", "surrogateescape") if isinstance(b, bytes) else str(b)


def _name_key(name: Any) -> str:
    return _to_str(name).lower()


class CommandTable:
    """All commands of one backend, by name, with a hot-path lookup on raw argv."""

    def __init__(self, raw: list[list[Any]]) -> None:
        self._raw: dict[str, list[Any]] = {}
        self._by_name: dict[str, CommandSpec] = {}
        for entry in raw:
            if not isinstance(entry, list) or len(entry) < 6:
                continue  # nil entry (COMMAND INFO of an unknown name) or garbage
            name = _name_key(entry[0])
            entry = _normalize_entry(entry)
            self._raw[name] = entry
            self._by_name[name] = _build_spec(entry, None)
        # argv[0] bytes -> spec; seeded with the usual spellings, grown on demand up to the limit.
        self._by_bytes: dict[bytes, CommandSpec] = {}
        self._sub_bytes: dict[str, dict[bytes, CommandSpec]] = {}
        for name, spec in self._by_name.items():
            b = name.encode("utf-8", "surrogateescape")
            self._by_bytes[b] = self._by_bytes[b.upper()] = spec
            if spec.subcommands is not None:
                subs: dict[bytes, CommandSpec] = {}
                for sub, sspec in spec.subcommands.items():
                    sb = sub.encode("utf-8", "surrogateescape")
                    subs[sb] = subs[sb.upper()] = sspec
                self._sub_bytes[name] = subs
        self._cache_room = _CACHE_LIMIT

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_command_reply(cls, reply: list[Any]) -> CommandTable:
        """From the raw COMMAND reply as parsed by hiredis.Reader (strings are bytes)."""
        return cls(reply)

    @classmethod
    def builtin(cls, path: Path | str | None = None) -> CommandTable:
        """From proxy/data/commands.json (redis-server 7.0.15's COMMAND reply)."""
        with open(path or BUILTIN_PATH, encoding="utf-8") as f:
            doc = json.load(f)
        return cls(_json_to_reply(doc["commands"]))

    # -- queries -----------------------------------------------------------------------------

    def lookup(self, argv: list[bytes]) -> CommandSpec | None:
        """The spec for argv, or None for an unknown command.

        For a container command the subcommand's spec is returned; the container's own spec comes
        back when argv has no subcommand (its arity check then fails, as in Redis) or an unknown
        one (then `is_container` is True and argc >= 2: "unknown subcommand").
        """
        if not argv:
            return None
        spec = self._by_bytes.get(argv[0])
        if spec is None:
            spec = self._by_name.get(_name_key(argv[0]))
            if spec is None:
                return None
            if self._cache_room > 0:
                self._cache_room -= 1
                self._by_bytes[argv[0]] = spec
        if spec.subcommands is None or len(argv) < 2:
            return spec
        subs = self._sub_bytes[spec.name]
        sub = subs.get(argv[1])
        if sub is None:
            sub = spec.subcommands.get(_name_key(argv[1]))
            if sub is None:
                return spec
            if self._cache_room > 0:
                self._cache_room -= 1
                subs[argv[1]] = sub
        return sub

    def get(self, name: str) -> CommandSpec | None:
        """The spec of `name` ("get", "OBJECT|encoding"), case-insensitive."""
        top, _, sub = name.lower().partition("|")
        spec = self._by_name.get(top)
        if spec is None or not sub:
            return spec
        return spec.subcommands.get(sub) if spec.subcommands else None

    def raw_info(self, name: str) -> list[Any] | None:
        """The command's COMMAND INFO entry, strings as bytes ("object|encoding": a subcommand)."""
        top, _, sub = name.lower().partition("|")
        entry = self._raw.get(top)
        if entry is None or not sub:
            return entry
        full = f"{top}|{sub}"
        subs = entry[9] if len(entry) > 9 else []
        return next((s for s in subs if _name_key(s[0]) == full), None)

    def names(self) -> list[str]:
        """Top-level command names, sorted (subcommands are reached through their container)."""
        return sorted(self._by_name)

    def count(self) -> int:
        """Number of top-level commands, as COMMAND COUNT reports it."""
        return len(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def iter_specs(self) -> Iterator[CommandSpec]:
        """Every spec, subcommands right after their container, in name order."""
        for name in sorted(self._by_name):
            spec = self._by_name[name]
            yield spec
            if spec.subcommands:
                for sub in sorted(spec.subcommands):
                    yield spec.subcommands[sub]


def _normalize_entry(entry: list[Any]) -> list[Any]:
    """A copy of a COMMAND entry with subcommands sorted by name.

    Redis emits subcommands in hash-table order; sorting makes raw_info() (and the generated
    JSON) independent of it.
    """
    entry = list(entry)
    if len(entry) > 9 and isinstance(entry[9], list) and entry[9]:
        entry[9] = sorted(
            (_normalize_entry(s) for s in entry[9] if isinstance(s, list) and len(s) >= 6),
            key=lambda s: _name_key(s[0]),
        )
    return entry


def _build_spec(entry: list[Any], container: str | None) -> CommandSpec:
    """A CommandSpec from one COMMAND entry [name, arity, flags, first, last, step, acl, tips,
    key_specs, subcommands] (Redis 6 entries stop after `step` or `acl`)."""
    name = _name_key(entry[0])
    arity = int(entry[1])
    flags = frozenset(_name_key(f) for f in entry[2] or ())
    first, last, step = int(entry[3]), int(entry[4]), int(entry[5])
    raw_specs = entry[8] if len(entry) > 8 and entry[8] else []
    key_specs = tuple(parse_key_spec(s) for s in raw_specs)
    if not key_specs and first > 0:
        key_specs = (legacy_key_spec(first, last, step),)  # pre-7 backend: legacy triple only

    subcommands: dict[str, CommandSpec] | None = None
    raw_subs = entry[9] if len(entry) > 9 and entry[9] else []
    if raw_subs:
        subcommands = {}
        for raw_sub in raw_subs:
            sub = _build_spec(raw_sub, name)
            subcommands[sub.name.partition("|")[2] or sub.name] = sub

    has_keys = any(not s.not_key for s in key_specs)
    route, reason = route_for(name, container, has_keys)
    return CommandSpec(
        name=name,
        arity=arity,
        flags=flags,
        key_specs=key_specs,
        route=route,
        reason=reason,
        key1=_is_key1(name, key_specs),
        subcommands=subcommands,
    )


def _json_to_reply(obj: Any) -> Any:
    """JSON (strings as str) back to hiredis's shape (strings as bytes)."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "surrogateescape")
    if isinstance(obj, list):
        return [_json_to_reply(o) for o in obj]
    return obj


def reply_to_json(obj: Any) -> Any:
    """hiredis's shape (strings as bytes) to JSON-able (strings as str); inverse of the above."""
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "surrogateescape")
    if isinstance(obj, list | tuple):
        return [reply_to_json(o) for o in obj]
    return obj
