"""Key positions from Redis 7 key specs (sans-IO).

Key positions follow https://redis.io/docs/reference/key-specs/ with the arithmetic of Redis's
`getKeysUsingKeySpecs` (src/db.c).  Where Redis itself gives up on the specs (an `unknown` begin
search or an INCOMPLETE spec) and falls back to a hand-written `*GetKeys` function, we do the same
for the built-in commands that need it (SORT, MIGRATE); anything else with an unusable spec keeps
the keys found by its other specs (Redis's GET_KEYSPEC_RETURN_PARTIAL behaviour) -- so e.g.
`PFMERGE dest` yields [dest] where Redis 7.0's COMMAND GETKEYS, discarding every spec as soon as
one is out of range, yields nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

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


def native_getkeys(
    name: str, specs: tuple[KeySpec, ...]
) -> Callable[[list[bytes]], list[int]] | None:
    """Redis's getkeys-proc fallback for `name`, if its (real) specs can't find every key."""
    if any(s.incomplete for s in specs):
        return _NATIVE_GETKEYS.get(name)
    return None


def is_key1(name: str, specs: tuple[KeySpec, ...]) -> bool:
    real = tuple(s for s in specs if not s.not_key)
    return (
        native_getkeys(name, real) is None
        and len(real) == 1
        and real[0].begin == ("index", 1)
        and real[0].find[:2] == ("range", 0)
    )


