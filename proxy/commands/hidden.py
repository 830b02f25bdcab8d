"""Keys a command reads or writes without naming them as keys (sans-IO).

The proxy sends a keyed command to the group owning its *declared* keys (key specs, getkeys
procs). A command that forms other key names at run time would read them on that group only,
and so answer wrong data without an error when they live elsewhere. Redis Cluster has the same
problem and refuses such commands unless the keys are provably in the command's slot; the
proxy applies the same rules, with Redis's own error texts, before routing (and while queuing
inside MULTI). `hidden_key_error` is the one entry point.

What the proxy checks (the Redis Cluster 7.4 rules):

* `SORT` / `SORT_RO` ... `BY pattern` / `GET pattern` (sort.c, sortCommandGeneric): a `BY`
  pattern with a `*` and every `GET` pattern but `#` must hash, by `patternHashSlot`, to the
  slot of the sorted key; else "BY/GET option of SORT denied in Cluster mode when keys formed by
  the pattern may be in different slots." (`BY nosort`, any `BY` without `*`, and `GET #` read
  no other key.) The options are scanned left to right as Redis does, so a syntax error before
  the pattern is still the backend's to report.
* `COPY src dst DB n` with n != 0: the proxy serves database 0 only (SELECT), so a copy into
  another database would land where no client of the proxy can see it; refused with Redis
  Cluster's "Copying to another database is not allowed in cluster mode".

What cannot be checked, and is documented instead (README, "What is and is not supported"):

* `EVAL`/`EVALSHA`/`FCALL` (and `_RO`) touching keys not passed as KEYS: the backends are not
  cluster nodes, so such a script silently reads or writes the group the declared keys (or, with
  none, any group) live on. Redis Cluster catches it at run time only; the proxy cannot.

Looked at and found right (declared keys, so CROSSSLOT applies, or refused): `SORT ... STORE`,
`GEORADIUS[BYMEMBER] STORE/STOREDIST`, `GEOSEARCHSTORE`, `ZRANGESTORE`, `*STORE`/numkeys
commands, `LCS`, `BITOP`, `PFMERGE`, `RENAME`/`COPY`/`SMOVE`/`LMOVE`, `XREAD[GROUP] STREAMS`,
`OBJECT`/`MEMORY USAGE`/`TYPE` (keyed); `MIGRATE`, `MOVE`, `SWAPDB` (refused).
"""

from __future__ import annotations

from binascii import crc_hqx

from slotcore.keyslot import hash_tag
from slotcore.resp import encode_error

SORT_BY_DENIED = encode_error(
    "ERR BY option of SORT denied in Cluster mode when keys formed by the pattern may be in "
    "different slots.")
SORT_GET_DENIED = encode_error(
    "ERR GET option of SORT denied in Cluster mode when keys formed by the pattern may be in "
    "different slots.")
COPY_DB_DENIED = encode_error("ERR Copying to another database is not allowed in cluster mode")

# Commands `hidden_key_error` looks at; the client's fast path must not serve them.
CHECKED = frozenset({"sort", "sort_ro", "copy"})


def pattern_slot(pattern: bytes, mask: int) -> int:
    """Redis's patternHashSlot: the one slot every key `pattern` can form is in, else -1."""
    s = -1  # index of the first "{"
    for i, ch in enumerate(pattern):
        if ch in (0x2A, 0x3F, 0x5B, 0x5C):  # * ? [ \ : keys anywhere (or not worked out)
            return -1
        if s == -1 and ch == 0x7B:  # {
            s = i
        elif s >= 0 and ch == 0x7D:  # }
            if i == s + 1:
                s = -2  # "{}": the whole key is hashed
            else:
                return crc_hqx(pattern[s + 1 : i], 0) & mask
    return crc_hqx(pattern, 0) & mask


def _key_slot(key: bytes, mask: int) -> int:
    return crc_hqx(hash_tag(key) if 0x7B in key else key, 0) & mask


def _sort_error(argv: list[bytes], readonly: bool, mask: int) -> bytes | None:
    # sortCommandGeneric's option scan; on anything it would refuse, stop and let the backend
    # answer it (syntax error, LIMIT not an integer ...).
    argc = len(argv)
    slot = -1
    j = 2
    while j < argc:
        left = argc - j - 1
        opt = argv[j].lower()
        if opt in (b"asc", b"desc", b"alpha"):
            pass
        elif opt == b"limit" and left >= 2:
            j += 2
        elif opt == b"store" and not readonly and left >= 1:
            j += 1
        elif opt in (b"by", b"get") and left >= 1:
            pattern = argv[j + 1]
            if opt == b"by" and 0x2A not in pattern:
                pass  # no "*": the sort is skipped, no key is read
            elif opt == b"get" and pattern == b"#":
                pass
            else:
                if slot < 0:
                    slot = _key_slot(argv[1], mask)
                if pattern_slot(pattern, mask) != slot:
                    return SORT_BY_DENIED if opt == b"by" else SORT_GET_DENIED
            j += 1
        else:
            return None
        j += 1
    return None


def _copy_error(argv: list[bytes]) -> bytes | None:
    j = 3
    while j < len(argv):
        opt = argv[j].lower()
        if opt == b"db" and j + 1 < len(argv):
            try:
                if int(argv[j + 1]) != 0:
                    return COPY_DB_DENIED
            except ValueError:
                return None  # the backend's "value is not an integer"
            j += 1
        elif opt != b"replace":
            return None
        j += 1
    return None


def hidden_key_error(name: str, argv: list[bytes], mask: int) -> bytes | None:
    """The error for a command whose hidden keys may be outside its slot, else None.

    `name` is the command's lowercase name; `mask` the slot count minus one.
    """
    if name == "sort":
        return _sort_error(argv, False, mask)
    if name == "sort_ro":
        return _sort_error(argv, True, mask)
    if name == "copy":
        return _copy_error(argv)
    return None
