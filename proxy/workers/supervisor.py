"""The supervisor of `workers: N`: N proxy processes on one client port, one proxy to the
dashboard.

* **Port**: the supervisor binds the client address first with SO_REUSEPORT (resolving port 0,
  failing fast when it is taken) and keeps that socket, never listening on it, so the port
  stays reserved while workers come and go; every worker binds and listens on it with
  SO_REUSEPORT and the kernel spreads new connections over the listening workers. A dead
  worker's connections die with it; the others' are untouched.
* **Slot maps** (the migration's guarantee): the supervisor registers with the dashboard once
  (one id, one address, one admin API) and every push it receives is pushed on to every live
  worker's private control socket; it acknowledges only when every one of them applied it (a
  worker acknowledges once requests routed under the old map are answered, as any proxy does).
  A worker that is alive but does not apply it fails the push, and the dashboard rolls the
  change back. A worker that is dead does not serve, so it is not waited for: a (re)started
  worker gets the newest map, under the same lock as pushes, before it accepts a client.
* **Restarts**: a dead worker is restarted after a backoff (doubling from
  `restart_backoff_min` to `restart_backoff_max`, reset once a worker ran `stable_after`); one
  that died `crash_loop_restarts` times within `crash_loop_window` is reported and left down,
  and when no worker is left the supervisor exits 1. A worker that stops answering its control
  socket for `hang_timeout` is killed (and so restarted).
* **Stats**: the admin API answers for all workers: per worker and in total
  (`aggregate.total_stats`); /metrics, /api/latency, /api/slowlog and /api/hotkeys are the
  workers' own, fetched from each and merged (`merge`).
* **SIGTERM/SIGINT**: every worker drains (stops accepting, answers what it read, exits), then
  the supervisor exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from typing import Any

import aiohttp

from slotcore.addr import join_addr
from slotcore.contract import PROXY_INFO, PROXY_SLOTS, PROXY_STATS
from slotcore.slotmap import SlotMap, StaleSlotMap

from .. import __version__
from ..config import ProxyConfig
from ..control.admin import WORKER_CONTACT
from ..control.agent import DashboardAgent
from .admin import SupervisorAdmin
from .aggregate import total_stats
from .errors import WorkerError
from .worker import WorkerSpec

log = logging.getLogger("slotproxy.supervisor")

TICK = 1.0  # s between liveness checks of the workers


class Worker:
    """One worker slot: its current process (if any) and its history."""

    def __init__(self, index: int, control: str, token: str | None) -> None:
        self.index = index
        self.control = control
        self.proc: asyncio.subprocess.Process | None = None
        self.state = "starting"  # starting | ready | backoff | failed | stopped
        self.synced = False      # has been pushed the map in force: pushes must reach it
        self.restarts = 0
        self.deaths: deque[float] = deque()
        self.started_at = 0.0
        self.last_exit: int | None = None
        self.last_answer = time.monotonic()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.control), headers=self._headers)
        return self._session

    async def call_text(self, method: str, path: str, timeout: float,
                        body: Any = None) -> tuple[int, str]:
        """One request to the worker's control socket: (status, body text)."""
        async with self._http().request(
                method, f"http://worker{path}", json=body,
                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            text = await resp.text()
        self.last_answer = time.monotonic()
        return resp.status, text

    async def call(self, method: str, path: str, timeout: float,
                   body: Any = None) -> tuple[int, Any]:
        """One request to the worker's control socket: (status, JSON body)."""
        status, text = await self.call_text(method, path, timeout, body)
        try:
            data = json.loads(text) if text else {}
        except json.JSONDecodeError:
            data = {"error": text[:200]}
        return status, data

    async def exited(self, within: float) -> bool:
        """Whether the process is gone (waiting up to `within` for it to be reaped)."""
        if self.proc is None:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.proc.wait()), within)
        return self.proc.returncode is not None

    def view(self) -> dict[str, Any]:
        return {"index": self.index, "pid": self.pid, "state": self.state,
                "restarts": self.restarts, "last_exit": self.last_exit,
                "started": self.started_at or None}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Supervisor:
    """Runs the workers; to the dashboard (and the agent) it is the proxy."""

    def __init__(self, cfg: ProxyConfig, *, uvloop: bool = True) -> None:
        self.cfg = cfg
        self.uvloop = uvloop
        self.sup = cfg.supervisor
        self.workers: list[Worker] = []
        self.slotmap: SlotMap | None = None  # the newest map sent out (a restart gets it)
        self.acked: SlotMap | None = None    # the newest map every live worker applied
        self.started_wall = time.time()
        self.failed = False                  # every worker crash-looped: exit 1
        self.done = asyncio.Event()
        self._lock = asyncio.Lock()          # pushes and a worker's first map, one at a time
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._placeholder: socket.socket | None = None
        self._runtime = ""
        self.admin: SupervisorAdmin | None = None
        self.agent: DashboardAgent | None = None
        self.port = 0

    # ------------------------------------------------------------------ the map (MapHolder)
    @property
    def epoch(self) -> int:
        return self.acked.epoch if self.acked is not None else 0

    @property
    def online(self) -> bool:
        return self.acked is not None

    # ------------------------------------------------------------------ identity
    def identity(self) -> dict[str, Any]:
        cfg = self.cfg
        admin = (join_addr(cfg.admin_listen[0], self.admin.port)
                 if self.admin is not None and cfg.admin_listen is not None else None)
        return {
            "id": cfg.resolved_proxy_id(),
            "version": __version__,
            "addr": join_addr(cfg.listen[0], self.port),
            "admin": admin,
            "pid": os.getpid(),
            "started": self.started_wall,
            "epoch": self.epoch,
            "online": self.online,
            "workers": [w.view() for w in self.workers],
        }

    def registration(self) -> dict[str, Any]:
        me = self.identity()
        if self.cfg.advertise:
            me["addr"] = self.cfg.advertise
        return me

    # ------------------------------------------------------------------ start
    def _reserve_port(self) -> None:
        host, port = self.cfg.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self._placeholder = sock
        self.port = sock.getsockname()[1]
        # Pin the port (and the id derived from it) for every worker and the dashboard.
        self.cfg = self.cfg.with_overrides(listen=(host, self.port),
                                           proxy_id=self.cfg.with_overrides(
                                               listen=(host, self.port)).resolved_proxy_id())

    def _spec(self, w: Worker) -> WorkerSpec:
        cfg = self.cfg.with_overrides(admin_listen=None, dashboard=None, slot_map=None,
                                      workers=1)
        return WorkerSpec(index=w.index, workers=self.cfg.workers, cfg=cfg, control=w.control,
                          fenced=bool(self.cfg.dashboard), supervisor_pid=os.getpid(),
                          uvloop=self.uvloop)

    async def start(self) -> None:
        cfg = self.cfg
        self._reserve_port()
        self._runtime = tempfile.mkdtemp(prefix="slotproxy-workers-")  # mode 0700
        self.workers = [Worker(i, os.path.join(self._runtime, f"w{i}.sock"), cfg.admin_token)
                        for i in range(cfg.workers)]
        if cfg.slot_map is not None:
            self.slotmap = self.acked = cfg.slot_map  # no worker yet: applied by all of none
        if cfg.admin_listen is not None:
            self.admin = SupervisorAdmin(self)
            await self.admin.start()
        if cfg.dashboard:
            self.agent = DashboardAgent(cfg.dashboard, cfg.admin_token, self, self.apply,
                                        self.registration, on_contact=self._relay_contact)
            await self.agent.start()
            log.info("waiting for a slot map from the dashboard at %s", cfg.dashboard)
            await self.agent.wait_online()
        results = await asyncio.gather(*(self._start_worker(w) for w in self.workers),
                                       return_exceptions=True)
        errors = [f"worker {w.index}: {r}" for w, r in zip(self.workers, results, strict=True)
                  if isinstance(r, BaseException)]
        if errors:
            raise WorkerError("; ".join(errors))
        for w in self.workers:
            self._spawn(self._monitor(w))
        self._spawn(self._tick())
        log.info("slotproxy %s supervisor: %d workers on %s:%d (pids %s)%s", __version__,
                 len(self.workers), cfg.listen[0], self.port,
                 ", ".join(str(w.pid) for w in self.workers),
                 f", admin on {self.identity()['admin']}" if self.admin else "")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_worker(self, w: Worker) -> None:
        """Start the process, give it the map in force, wait until it serves."""
        w.synced = False
        w.state = "starting"
        await w.close()  # no kept-alive connection to a previous process survives
        with contextlib.suppress(FileNotFoundError):
            os.unlink(w.control)
        w.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy.workers", stdin=asyncio.subprocess.PIPE)
        assert w.proc.stdin is not None
        w.proc.stdin.write(self._spec(w).encode())
        await w.proc.stdin.drain()
        w.started_at = time.time()
        deadline = time.monotonic() + self.sup.start_timeout
        try:
            await self._until_answers(w, deadline, serving=False)
            async with self._lock:
                if self.slotmap is not None:
                    error = await self._push_one(w, self.slotmap, first=True)
                    if error:
                        raise WorkerError(error)
                w.synced = True
            await self._until_answers(w, deadline, serving=True)
        except BaseException:
            if w.alive:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
            raise
        w.state = "ready"
        w.last_answer = time.monotonic()
        log.info("worker %d ready (pid %d, epoch %d)", w.index, w.pid, self.epoch)

    async def _until_answers(self, w: Worker, deadline: float, serving: bool) -> None:
        """Poll the worker's /api/info until it answers (and, with `serving`, serves)."""
        while True:
            if not w.alive:
                rc = await w.proc.wait() if w.proc is not None else None
                raise WorkerError(f"exited with code {rc} while starting")
            if time.monotonic() > deadline:
                raise WorkerError(f"not serving within {self.sup.start_timeout:g}s")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                status, info = await w.call("GET", PROXY_INFO, 2.0)
                if status == 200 and (not serving or info.get("serving")):
                    return
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------ restarts
    async def _monitor(self, w: Worker) -> None:
        backoff = self.sup.restart_backoff_min
        while True:
            assert w.proc is not None
            rc = await w.proc.wait()
            if self._stopping:
                return
            w.synced = False
            w.last_exit = rc
            now = time.monotonic()
            lived = time.time() - w.started_at
            w.deaths.append(now)
            while w.deaths and now - w.deaths[0] > self.sup.crash_loop_window:
                w.deaths.popleft()
            if lived >= self.sup.stable_after:
                backoff = self.sup.restart_backoff_min
            if len(w.deaths) >= self.sup.crash_loop_restarts:
                w.state = "failed"
                log.error("worker %d is crash-looping (%d exits within %gs, last code %s): "
                          "not restarting it", w.index, len(w.deaths),
                          self.sup.crash_loop_window, rc)
                if all(x.state == "failed" for x in self.workers):
                    log.error("every worker failed: the supervisor exits")
                    self.failed = True
                    self.done.set()
                return
            w.state = "backoff"
            log.error("worker %d (pid %s) exited with code %s after %.1fs; restarting in %.2gs",
                      w.index, w.pid, rc, lived, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.sup.restart_backoff_max)
            if self._stopping:
                return
            w.restarts += 1
            try:
                await self._start_worker(w)
            except (WorkerError, OSError) as e:
                log.error("worker %d did not start: %s", w.index, e)
                if w.proc is not None:
                    await w.proc.wait()  # counted as a death above, on the next turn

    async def _tick(self) -> None:
        """Kill a worker that stopped answering (hung); the monitor restarts it."""
        while True:
            await asyncio.sleep(TICK)
            ready = [w for w in self.workers if w.state == "ready" and w.alive]
            await asyncio.gather(*(self._check(w) for w in ready))

    async def _check(self, w: Worker) -> None:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            await w.call("GET", PROXY_INFO, min(2.0, self.sup.hang_timeout))
        silent = time.monotonic() - w.last_answer
        if silent > self.sup.hang_timeout and w.alive and w.proc is not None:
            log.error("worker %d (pid %d) has not answered for %.0fs: killing it", w.index,
                      w.pid, silent)
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()

    # ------------------------------------------------------------------ pushes
    async def apply(self, slotmap: SlotMap) -> None:
        """Apply `slotmap` in every live worker; returns when all did. Raises StaleSlotMap
        (an older epoch, another slot count) or WorkerError (naming the workers that did
        not apply it)."""
        async with self._lock:
            cur = self.slotmap
            if cur is not None and slotmap.nslots != cur.nslots:
                raise StaleSlotMap(
                    f"slot map has {slotmap.nslots} slots, this proxy uses {cur.nslots}")
            if cur is not None and slotmap.epoch < cur.epoch:
                raise StaleSlotMap(f"stale epoch {slotmap.epoch}: proxy is at epoch {cur.epoch}")
            self.slotmap = slotmap  # from now on a restarted worker starts with it
            targets = [w for w in self.workers if w.synced]
            body = slotmap.to_json()
            errors = [e for e in await asyncio.gather(*(self._push_one(w, slotmap, body=body)
                                                        for w in targets)) if e]
            if errors:
                raise WorkerError("not applied by every worker: " + "; ".join(errors))
            self.acked = slotmap

    async def _push_one(self, w: Worker, slotmap: SlotMap, body: Any = None,
                        first: bool = False) -> str | None:
        """Push to one worker: None when applied (or the worker is dead: it serves nothing
        and will start with the newest map), else the error."""
        try:
            status, reply = await w.call("PUT", PROXY_SLOTS, self.sup.push_timeout,
                                         body if body is not None else slotmap.to_json())
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            if not first and await w.exited(1.0):
                w.synced = False
                return None
            return f"worker {w.index} (pid {w.pid}): {str(e) or type(e).__name__}"
        if status == 200:
            return None
        return f"worker {w.index} (pid {w.pid}): HTTP {status} {reply.get('error', reply)}"

    def _relay_contact(self) -> None:
        """The dashboard answered a heartbeat: tell every worker (their fence counts from it)."""
        async def relay() -> None:
            await asyncio.gather(*(w.call("POST", WORKER_CONTACT, 2.0)
                                   for w in self.workers if w.synced), return_exceptions=True)
        self._spawn(relay())

    # ------------------------------------------------------------------ stats
    async def _ask(self, w: Worker, path: str, text: bool = False) -> Any:
        """A synced worker's answer to GET `path` (a JSON object, or the text), None when
        it is not synced or does not answer 200 in time."""
        if not w.synced:
            return None
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            if text:
                status, raw = await w.call_text("GET", path, 3.0)
                return raw if status == 200 else None
            status, body = await w.call("GET", path, 3.0)
            if status == 200 and isinstance(body, dict):
                return body
        return None

    async def collect(self, path: str, text: bool = False) -> list[tuple[int, Any]]:
        """(index, answer) of every synced worker that answers GET `path` (the admin API's
        merged /metrics, /api/latency, /api/slowlog and /api/hotkeys)."""
        got = await asyncio.gather(*(self._ask(w, path, text) for w in self.workers))
        return [(w.index, d) for w, d in zip(self.workers, got, strict=True) if d is not None]

    def worker_views(self) -> list[dict[str, Any]]:
        return [w.view() for w in self.workers]

    async def stats(self, slots: bool = False) -> dict[str, Any]:
        """Per worker and in total (the admin API's /api/stats)."""
        path = f"{PROXY_STATS}?slots=1" if slots else PROXY_STATS
        docs = await asyncio.gather(*(self._ask(w, path) for w in self.workers))
        total = total_stats(d for d in docs if d is not None)
        total.update(epoch=self.epoch, uptime=round(time.time() - self.started_wall, 1))
        total["workers"] = [{**w.view(), "stats": d}
                            for w, d in zip(self.workers, docs, strict=True)]
        return total

    # ------------------------------------------------------------------ stop
    async def stop(self) -> None:
        """Drain every worker (SIGTERM: each stops accepting and answers what it read)."""
        if self._stopping:
            return
        self._stopping = True
        if self.agent is not None:
            await self.agent.stop()
        live = [w for w in self.workers if w.alive]
        log.info("shutting down: draining %d workers", len(live))
        for w in live:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        grace = self.cfg.shutdown_timeout + 5.0
        for w in live:
            if not await w.exited(grace) and w.proc is not None:
                log.error("worker %d did not drain within %gs: killing it", w.index, grace)
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
            w.state = "stopped"
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.admin is not None:
            await self.admin.stop()
        for w in self.workers:
            await w.close()
        if self._placeholder is not None:
            self._placeholder.close()
        if self._runtime:
            shutil.rmtree(self._runtime, ignore_errors=True)
        log.info("stopped")


async def supervise(cfg: ProxyConfig, uvloop: bool = True) -> int:
    """Run the supervisor until SIGTERM/SIGINT (0) or until every worker failed (1)."""
    sup = Supervisor(cfg, uvloop=uvloop)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, sup.done.set)
    # SIGTERM while starting (e.g. still waiting for the dashboard's map) stops at once too.
    starting = loop.create_task(sup.start())
    stopped = loop.create_task(sup.done.wait())
    await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()
    try:
        await starting
    except asyncio.CancelledError:
        pass
    except BaseException:
        stopped.cancel()
        await sup.stop()
        raise
    await stopped
    await sup.stop()
    return 1 if sup.failed else 0
