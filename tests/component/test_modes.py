"""Connection modes: before AUTH only AUTH/HELLO/QUIT run (the fast path is off), after it the
plain mode serves everything."""

from __future__ import annotations

from .conftest import MakeProxy


async def test_auth_required_mode_refuses_even_fast_path_commands(make_proxy: MakeProxy) -> None:
    proxy = await make_proxy(password="s3cret")
    key = proxy.keys_on(1, 1)[0]
    c = proxy.client()
    assert not c.conn.mode.fast_path
    got = await c.call((b"GET", key), (b"MGET", key, b"x"), (b"AUTH", b"wrong"),
                       (b"AUTH", b"s3cret"), (b"GET", key), (b"RESET",), (b"GET", key))
    noauth = "NOAUTH Authentication required."
    assert got[:4] == [noauth, noauth,
                       "WRONGPASS invalid username-password pair or user is disabled.", b"OK"]
    (seq,) = proxy.backend(1).seq_of(b"GET", key)  # only the GET after AUTH got through
    assert got[4] == str(seq).encode()
    assert got[5:] == [b"RESET", noauth]  # RESET goes back to needing AUTH
    assert proxy.backend(1).commands(b"MGET") == []
