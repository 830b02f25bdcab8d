"""The command table: arity, flags, key positions and route of every command (sans-IO).

The table is built from a backend's own `COMMAND` reply (Redis 7 format), so every command the
backend knows -- modules included -- is routed by the backend's own key specs.  When no backend
answers at start-up, `CommandTable.builtin()` loads `proxy/data/commands.json`, a verbatim dump of
redis-server 7.0.15's `COMMAND` reply written by `scripts/gen_command_table.py`.

Key positions: `commands.keyspecs`; routes: `commands.policy`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .hidden import CHECKED as HIDDEN_CHECKED
from .keyspecs import KeySpec, is_key1, legacy_key_spec, native_getkeys, parse_key_spec
from .policy import Route, route_for

BUILTIN_PATH = Path(__file__).resolve().parent.parent / "data" / "commands.json"


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
        object.__setattr__(self, "_native", native_getkeys(self.name, specs))

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

    # Slots: the compiled hot path reads fast_arity and split_kinds on every read.
    __slots__ = ("_by_bytes", "_by_name", "_cache_room", "_raw", "_sub_bytes", "fast_arity",
                 "split_kinds")

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
        # argv[0] bytes -> arity, for the commands the client connection's inlined fast path
        # serves without a lookup: KEYED, exactly one key at argv[1] (GET, SET, INCR, HSET ...).
        # It holds only spellings `_by_bytes` holds, so it shares its bound.
        self.fast_arity: dict[bytes, int] = {
            b: spec.arity for b, spec in self._by_bytes.items() if _fast(spec)}
        # argv[0] bytes -> (merge kind, arity) of the SPLIT commands (MSET MGET DEL ...), for the
        # compiled fast path, which splits them itself (fanout.split's MERGE_KIND numbers).
        self.split_kinds: dict[bytes, tuple[int, int]] = {
            b: (SPLIT_MERGE[spec.name], spec.arity) for b, spec in self._by_bytes.items()
            if _splittable(spec)}

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
                if _fast(spec):
                    self.fast_arity[argv[0]] = spec.arity
                elif _splittable(spec):
                    self.split_kinds[argv[0]] = (SPLIT_MERGE[spec.name], spec.arity)
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

    def all_names(self) -> list[str]:
        """Every command and subcommand name ("config|get"), as COMMAND LIST reports them."""
        out: list[str] = []
        for name in sorted(self._by_name):
            out.append(name)
            subs = self._by_name[name].subcommands
            if subs:
                out.extend(sorted(f"{name}|{sub}" for sub in subs))
        return out

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


# How each SPLIT command's replies merge (fanout.merge; the compiled Gather's `kind`): all
# OK (MSET), the sum of the counts (DEL ...), the values back in key order (MGET).
MERGE_OK, MERGE_SUM, MERGE_MGET = 0, 1, 2
SPLIT_MERGE = {"mset": MERGE_OK, "mget": MERGE_MGET, "del": MERGE_SUM, "unlink": MERGE_SUM,
               "exists": MERGE_SUM, "touch": MERGE_SUM}


def _splittable(spec: CommandSpec) -> bool:
    return (spec.route is Route.SPLIT and spec.subcommands is None
            and spec.name in SPLIT_MERGE)


def _fast(spec: CommandSpec) -> bool:
    # SORT_RO has one key, but its BY/GET patterns must be checked (commands.hidden).
    return (spec.key1 and spec.route is Route.KEYED and spec.subcommands is None
            and spec.name not in HIDDEN_CHECKED)


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
        key1=is_key1(name, key_specs),
        subcommands=subcommands,
    )


def _json_to_reply(obj: Any) -> Any:
    """JSON (strings as str) back to hiredis's shape (strings as bytes)."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "surrogateescape")
    if isinstance(obj, list):
        return [_json_to_reply(o) for o in obj]
    return obj


