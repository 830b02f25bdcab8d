"""What happens when the store or a leader goes away: real etcd, real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dashboard.config import StoreConfig
from dashboard.store.base import NotLeader, StoreUnavailable
from dashboard.store.etcd import EtcdStore
from dashboard.store.file import FileStore
from dashboard.store.keys import Keys
from tests.harness import REPO, AsyncHttp, env
from tests.harness.inproc import ContractProxy, DashboardServer


async def test_etcd_lease_expiry_hands_over_and_fences(etcd_url: str, keys: Keys) -> None:
    a = EtcdStore([etcd_url], lease_ttl=2)
    b = EtcdStore([etcd_url], lease_ttl=2)
    try:
        await a.campaign(keys.leader, {"id": "a"})
        # a freezes (no keepalives, no resignation): the lease must expire by itself
        assert a._keepalive is not None
        a._keepalive.cancel()
        await asyncio.wait_for(b.campaign(keys.leader, {"id": "b"}, retry_interval=0.1), 8)
        assert await b.leader(keys.leader) == {"id": "b"}
        with pytest.raises(NotLeader):
            await a.put(keys.topology, {"from": "zombie a"})
        assert await b.get(keys.topology) is None
    finally:
        await a.close()
        await b.close()


async def test_etcd_unreachable_is_reported(keys: Keys) -> None:
    from tests.harness import free_port
    store = EtcdStore([f"http://127.0.0.1:{free_port()}"], timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable, match="etcd unreachable"):
            await store.get(keys.topology)
    finally:
        await store.close()


def test_file_store_lock_dies_with_its_process(tmp_path: Path) -> None:
    """A crashed leader never leaves a stale lock (Codis needs `--remove-lock` for that)."""
    code = ("import asyncio, sys, time\n"
            "from dashboard.store.file import FileStore\n"
            "s = FileStore(sys.argv[1])\n"
            "assert asyncio.run(s.try_lead('x', {'id': 'child'}))\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, env=env(),
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        store = FileStore(tmp_path)
        assert not asyncio.run(store.try_lead("x", {"id": "me"}))
        assert asyncio.run(store.leader("x")) == {"id": "child"}
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
        assert asyncio.run(store.leader("x")) is None
        assert asyncio.run(store.try_lead("x", {"id": "me"}))
        asyncio.run(store.close())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


async def test_store_outage_refuses_changes_without_pushing(etcd_process, keys: Keys,
                                                            redis_servers) -> None:
    proc, url = etcd_process
    dash = await DashboardServer(store_cfg=StoreConfig(kind="etcd", endpoints=(url,),
                                                       lease_ttl=5, timeout=0.5),
                                 cluster=keys.cluster).start()
    proxy = await ContractProxy("p0").start()
    try:
        api = AsyncHttp(dash.url)
        await api.ok("POST", "/api/v1/groups", {"id": 1, "master": redis_servers[0].addr})
        await proxy.register(dash.url)
        await asyncio.sleep(0.3)
        epoch = proxy.epoch
        assert epoch == (await api.get("/api/v1/topology"))["epoch"]
        proc.stop()  # etcd goes away
        status, err = await api.call("POST", "/api/v1/slots/assign",
                                     {"assign": [{"slots": "0-100", "group": 1}]})
        assert status in (503,), err
        assert "nothing changed" in err["error"] or "standby" in err["error"]
        assert proxy.epoch == epoch  # nothing was pushed for a change the store never took
    finally:
        await proxy.stop()
        await dash.stop()
