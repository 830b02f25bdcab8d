"""One SCAN page of a migration's source: its keys of the leaving slots and their sizes, in ONE
round trip per page (sans-IO: the bytes to send and what the replies mean).

The pre-scan and every move pass walk the source the same way: the page's leaving keys are
sized with `MEMORY USAGE key` (the server's default of 5 samples: O(1) for a string, O(5) for an
aggregate, whatever its size) and the next `SCAN` page is asked for in the same write. The
commands are pipelined plain commands, not one Lua call: the server reads a pipeline 16 KiB at a
time and serves its other clients in between (a script sizing a whole page would hold it for
all of it), and measured on this project's 2-core VM it spends less CPU per key that way
(~0.8 µs a key against ~1.1 µs through `EVALSHA`, whose `KEYS` table and reply conversion cost
more than the calls they save). The requests are built with one bytes template per key: packing
a command tuple per key cost the mover ~1 µs a key.

Per round trip the servers and the mover pay a fixed cost (on this VM ~25 µs of the server's
CPU for a wake-up and its syscalls, more for the mover's event loop), so a page carries as many
keys as `count` allows and everything for it travels in one write.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Container, Iterable
from typing import Any

import hiredis

from slotcore.keyslot import hash_tag

_USAGE = b"*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$%d\r\n%s\r\n"


class PageError(Exception):
    """The server answered a page's SCAN or MEMORY USAGE with an error."""


def leaving(keys: Iterable[bytes], nslots: int,
            slots: Container[int]) -> list[tuple[bytes, int]]:
    """(key, slot) of the keys whose slot is in `slots` (the key_slot rule, inlined: this runs
    for every key of the source)."""
    mask = nslots - 1
    out: list[tuple[bytes, int]] = []
    append = out.append
    for k in keys:
        s = crc_hqx(hash_tag(k) if 0x7B in k else k, 0) & mask
        if s in slots:
            append((k, s))
    return out


def page_request(keys: Iterable[bytes], cursor: Any, count: int) -> bytes:
    """MEMORY USAGE of every key, then (cursor not None) the SCAN page after this one."""
    out = b"".join([_USAGE % (len(k), k) for k in keys])
    if cursor is not None:
        out += hiredis.pack_command(("SCAN", cursor, "COUNT", count))
    return out


def page_sizes(replies: list[Any], n: int) -> list[int]:
    """The first `n` replies as sizes in bytes (-1: the key is gone since the SCAN: moved on
    access, expired or deleted). Raises PageError on an error reply."""
    sizes: list[int] = []
    append = sizes.append
    for r in replies[:n]:
        if r is None:
            append(-1)
        elif isinstance(r, int):
            append(r)
        else:
            raise PageError(f"MEMORY USAGE failed: {r}")
    return sizes


def next_page(replies: list[Any], n: int) -> tuple[Any, list[bytes]]:
    """The SCAN reply after the `n` sizes: (cursor, keys)."""
    page = replies[n]
    if isinstance(page, hiredis.ReplyError) or not isinstance(page, list) or len(page) != 2:
        raise PageError(f"SCAN failed: {page}")
    return page[0], page[1]
