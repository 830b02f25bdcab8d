"""One SCAN page of a migration's source (dashboard/migrate/pages.py), without sockets: the
request bytes are what a server parses, the replies are what hiredis returns."""

from __future__ import annotations

import random

import hiredis
import pytest

from dashboard.migrate.pages import PageError, leaving, next_page, page_request, page_sizes
from slotcore.keyslot import key_slot


def parse_all(data: bytes) -> list[object]:
    """The commands in `data`, as a server reads them (RESP arrays of bulk strings)."""
    r = hiredis.Reader()
    r.feed(data)
    out = []
    while (cmd := r.gets()) is not False:
        out.append(cmd)
    return out


@pytest.mark.parametrize("nslots", [1024, 16384])
def test_leaving_agrees_with_key_slot(nslots: int) -> None:
    rnd = random.Random(7)
    keys = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 20))) for _ in range(3000)]
    keys += [b"{user1}:a", b"x{}y", b"{}{a}", b"a{b}c{d}", b"{", b"}{", b"{{x}}"]
    slots = set(rnd.sample(range(nslots), nslots // 3))
    want = [(k, key_slot(k, nslots)) for k in keys if key_slot(k, nslots) in slots]
    assert leaving(keys, nslots, slots) == want
    # any container works, e.g. the dict of the slots still moving
    assert leaving(keys, nslots, dict.fromkeys(slots, "t")) == want


def test_page_request_is_memory_usage_per_key_then_the_next_scan() -> None:
    keys = [b"a", b"", b"\r\n$5\r\n", bytes(range(256)), b"k" * 1000]
    usage = [[b"MEMORY", b"USAGE", k] for k in keys]
    assert parse_all(page_request(keys, b"1234", 500)) == [
        *usage, [b"SCAN", b"1234", b"COUNT", b"500"]]
    assert parse_all(page_request(keys, None, 500)) == usage
    assert page_request([], None, 10) == b""


def test_sizes_and_next_page_from_the_replies() -> None:
    replies: list[object] = [10, None, 0, 3 << 20, [b"77", [b"x", b"y"]]]
    assert page_sizes(replies, 4) == [10, -1, 0, 3 << 20]
    assert next_page(replies, 4) == (b"77", [b"x", b"y"])
    assert page_sizes([], 0) == []


def test_error_replies_raise() -> None:
    with pytest.raises(PageError, match="MEMORY USAGE failed: NOPERM"):
        page_sizes([1, hiredis.ReplyError("NOPERM no permission")], 2)
    with pytest.raises(PageError, match="SCAN failed"):
        next_page([hiredis.ReplyError("ERR invalid cursor")], 0)
    with pytest.raises(PageError, match="SCAN failed"):
        next_page([b"OK"], 0)
