"""One worker process: a whole proxy (ProxyApp) that takes its orders from its supervisor.

Started as `python -m proxy.workers` with the spec (its config, index, control socket)
pickled on stdin; stdin then stays open, and its end means the supervisor is gone: the worker
drains and exits rather than serve on unsupervised. Differences from a plain proxy:

* the listener binds with SO_REUSEPORT (every worker listens on the same port);
* no dashboard agent and no admin port: the admin API is served on a private Unix socket, where
  the supervisor pushes slot maps (the worker acknowledges once applied, exactly as a proxy
  acknowledges the dashboard) and relays the dashboard's contact (POST /api/contact);
* it serves clients only once the supervisor pushed it a map: a restarted worker never serves
  with a map older than its siblings'.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import struct
import sys
from dataclasses import dataclass
from typing import BinaryIO

from ..app import ProxyApp
from ..config import ProxyConfig
from ..control.admin import AdminServer
from ..lifecycle import loop_runner, run_process, serve_until_stopped
from ..server import Listener

_LEN = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    index: int
    workers: int
    cfg: ProxyConfig        # listen = the supervisor's resolved port; no dashboard, no admin
    control: str            # the Unix socket of this worker's admin API
    fenced: bool            # the supervisor has a dashboard: fence slots in transit on silence
    supervisor_pid: int
    uvloop: bool = True

    def encode(self) -> bytes:
        data = pickle.dumps(self)
        return _LEN.pack(len(data)) + data


def read_spec(stream: BinaryIO) -> WorkerSpec:
    head = stream.read(_LEN.size)
    if len(head) != _LEN.size:
        raise SystemExit("slotproxy worker: no spec on stdin (started by a supervisor only)")
    (n,) = _LEN.unpack(head)
    spec = pickle.loads(stream.read(n))  # from our own parent, over a pipe only it holds
    if not isinstance(spec, WorkerSpec):
        raise SystemExit("slotproxy worker: bad spec on stdin")
    return spec


class WorkerApp(ProxyApp):
    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(spec.cfg)
        self.spec = spec
        s = self.services
        self.listener = Listener(s, reuse_port=True)
        self.admin = AdminServer(s, self.apply_slot_map, self.identity, unix_path=spec.control)
        s.router.transit.fence_enabled = spec.fenced
        s.info_overrides.setdefault("Proxy", {}).update({
            "worker_id": str(spec.index), "workers": str(spec.workers),
            "supervisor_pid": str(spec.supervisor_pid)})

    def identity(self) -> dict:
        me = super().identity()
        me.update(worker=self.spec.index, serving=self.serving)
        return me

    async def _initial_map(self) -> None:
        router = self.services.router
        while not router.online:  # the supervisor pushes the map in force
            await asyncio.sleep(0.02)
        if self.sentinel is not None and router.slotmap is not None:
            # Standalone with `sentinels`: each worker follows them itself, as N standalone
            # proxies would; like one, it asks who is master before its first request.
            slotmap = await self.sentinel.initial(router.slotmap)
            if slotmap is not router.slotmap:
                await self.apply_slot_map(slotmap)
        await self.wait_backends()


class _Watch(asyncio.Protocol):
    """The supervisor's end of our stdin: its closing (the supervisor died) stops us."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop.set()


async def serve(spec: WorkerSpec) -> None:
    stop = asyncio.Event()
    await asyncio.get_running_loop().connect_read_pipe(lambda: _Watch(stop), sys.stdin)
    await serve_until_stopped(WorkerApp(spec), stop)


def main() -> int:
    spec = read_spec(sys.stdin.buffer)
    logging.basicConfig(
        level=spec.cfg.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[w{spec.index}]: %(message)s",
    )
    run = loop_runner(spec.uvloop, warn=False)  # the supervisor warned already
    return run_process(run, serve(spec), f"slotproxy worker {spec.index}")

