"""proxyctl against a real dashboard (in-process app, real HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json

import pytest

from dashboard import cli
from tests.harness import TOKEN, free_port


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return cli.main(list(argv))
    code = await asyncio.to_thread(call)
    return code, out.getvalue(), err.getvalue()


async def test_unreachable_dashboard_exits_3() -> None:
    code, _, err = await run("--dashboard", f"http://127.0.0.1:{free_port()}", "status")
    assert code == 3 and "unreachable" in err


async def test_cli_round_trip(dash, redis_servers, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTPROXY_DASHBOARD", dash.url)
    monkeypatch.delenv("SLOTPROXY_ADMIN_TOKEN", raising=False)
    a, b, c = (s.addr for s in redis_servers)

    code, _, err = await run("group", "add", "1", "--master", a)
    assert code == 1 and "401" in err and "SLOTPROXY_ADMIN_TOKEN" in err
    monkeypatch.setenv("SLOTPROXY_ADMIN_TOKEN", TOKEN)

    # --no-replicate: b is only recorded (no REPLICAOF), so status flags it below
    code, out, _ = await run("group", "add", "1", "--master", a, "--replica", b,
                             "--no-replicate")
    assert code == 0 and "group 1 created" in out
    code, out, _ = await run("group", "add", "--json")
    assert code == 0 and json.loads(out)["group"]["id"] == 2
    code, out, _ = await run("group", "add-server", "2", c)
    assert code == 0 and f"{c} added to group 2 as master" in out
    code, out, _ = await run("slots", "assign", "0-8191", "1")
    assert code == 0
    code, out, _ = await run("slots", "assign", "8192-16383", "2")
    assert code == 0
    code, _, err = await run("slots", "assign", "0-10", "2")
    assert code == 1 and "already belong to group" in err

    code, out, _ = await run("status")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"dashboard {dash.url}  leader")
    # b is a standalone redis (recorded with --no-replicate), not a replica of a: flagged
    assert any(line.split()[:4] == ["1", a, f"{b}(!)", "0-8191"] for line in lines), out
    assert "(!) replica unreachable or not replicating" in out
    assert "no proxies" in out
    code, out, _ = await run("--json", "status")
    topo = json.loads(out)
    assert topo["ranges"] == [[0, 8191, 1], [8192, 16383, 2]]

    code, out, _ = await run("slots", "show")
    assert code == 0 and "8192-16383" in out and "unassigned: none" in out
    code, out, _ = await run("group", "remove-server", "1", b)
    assert code == 0
    code, _, err = await run("group", "remove", "1")
    assert code == 1 and "owns slots 0-8191" in err
    code, _, err = await run("proxy", "remove", "nope", "--json")
    assert code == 1 and "unknown proxy" in json.loads(err)["error"]
    code, out, _ = await run("group", "list")
    assert code == 0 and out.splitlines()[1].split()[:2] == ["1", a]
