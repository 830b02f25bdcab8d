"""`python -m proxy -c etc/proxy.yaml` (console script: `slotproxy`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import replace

from . import __version__
from .config import (
    ConfigError,
    ProxyConfig,
    backends_config,
    check_sentinel,
    check_workers,
    load_config,
    parse_addr,
    parse_sentinel_addrs,
)
from .lifecycle import loop_runner, run_process, serve_until_stopped


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="slotproxy",
        description="Redis sharding proxy: keys hash to slots, slots map to redis-server groups.",
    )
    p.add_argument("-c", "--config", help="YAML config file (see etc/proxy.yaml)")
    p.add_argument("--listen", help="client address host:port (overrides the config)")
    p.add_argument("--backends",
                   help="quick start without a config: h:p,h:p,... one group each, "
                        "slots spread evenly")
    p.add_argument("--slots", type=int, choices=(16384, 1024), help="slot count (with --backends)")
    p.add_argument("--admin-listen", help="admin HTTP API address host:port")
    p.add_argument("--dashboard", help="dashboard URL to register with and take slot maps from")
    p.add_argument("--read-from", choices=("master", "prefer-replica", "replica"),
                   help="where read-only commands go (overrides the config's read_from)")
    p.add_argument("--sentinels",
                   help="h:p,h:p,... Redis Sentinels to follow for failovers (standalone only)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    p.add_argument("--no-hiredis", action="store_true",
                   help="use the pure-Python request parser")
    p.add_argument("--no-accelerator", action="store_true",
                   help="use the pure-Python hot path even when the compiled one is built")
    p.add_argument("--no-metrics", action="store_true",
                   help="no per-command counts, latency timing or slow log (metrics: false)")
    p.add_argument("--latency-sample-every", type=int, metavar="N",
                   help="time one request in N (latency_sample_every)")
    p.add_argument("--slowlog-log-slower-than", type=int, metavar="US",
                   help="µs for the proxy's slow log (slowlog_log_slower_than; <0: off)")
    p.add_argument("--no-hotkeys", action="store_true",
                   help="do not sample hot keys (config hotkeys.enabled: false)")
    p.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio event loop")
    p.add_argument("--workers", type=int, metavar="N",
                   help="run N proxy processes on the client port (SO_REUSEPORT, Linux) "
                        "under a supervisor that restarts them (overrides the config)")
    p.add_argument("--version", action="version", version=f"slotproxy {__version__}")
    return p.parse_args(argv)


def build_config(ns: argparse.Namespace) -> ProxyConfig:
    if ns.config and ns.backends:
        raise ConfigError("--backends: give either -c CONFIG or --backends, not both")
    if ns.backends:
        cfg = backends_config(ns.listen or "127.0.0.1:19000", ns.backends, ns.slots or 16384)
    elif ns.config:
        cfg = load_config(ns.config)
    else:
        raise ConfigError("no configuration: give -c CONFIG or --backends h:p,...")
    overrides: dict = {}
    if ns.listen:
        overrides["listen"] = parse_addr(ns.listen, "--listen")
    if ns.admin_listen:
        overrides["admin_listen"] = parse_addr(ns.admin_listen, "--admin-listen")
    if ns.dashboard:
        overrides["dashboard"] = ns.dashboard
    if ns.log_level:
        overrides["log_level"] = ns.log_level
    if ns.no_hiredis:
        overrides["use_hiredis"] = False
    if ns.no_accelerator:
        overrides["use_accelerator"] = False
    if ns.no_metrics:
        overrides["metrics"] = False
    if ns.slowlog_log_slower_than is not None:
        overrides["slowlog_log_slower_than"] = ns.slowlog_log_slower_than
    if ns.latency_sample_every is not None:
        if ns.latency_sample_every < 1:
            raise ConfigError("--latency-sample-every: must be at least 1")
        overrides["latency_sample_every"] = ns.latency_sample_every
    if getattr(ns, "no_hotkeys", False):
        overrides["hotkeys"] = replace(cfg.hotkeys, enabled=False)
    if ns.workers is not None:
        overrides["workers"] = check_workers(ns.workers, "--workers")
    if ns.read_from:
        overrides["reads"] = replace(cfg.reads, read_from=ns.read_from)
    if ns.sentinels:
        overrides["sentinel"] = replace(
            cfg.sentinel, addrs=parse_sentinel_addrs(ns.sentinels, "--sentinels"))
    if not overrides:
        return cfg
    cfg = cfg.with_overrides(**overrides)
    check_sentinel(cfg)
    return cfg


async def serve(cfg: ProxyConfig) -> None:
    from .app import ProxyApp

    await serve_until_stopped(ProxyApp(cfg), asyncio.Event())


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    try:
        cfg = build_config(ns)
    except ConfigError as e:
        print(f"slotproxy: config error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=cfg.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    run = loop_runner(not ns.no_uvloop)
    if cfg.workers > 1:
        from .workers.errors import WorkerError
        from .workers.supervisor import supervise

        return run_process(run, supervise(cfg, uvloop=run is not asyncio.run), "slotproxy",
                           (OSError, WorkerError))
    return run_process(run, serve(cfg), "slotproxy")


if __name__ == "__main__":
    sys.exit(main())
