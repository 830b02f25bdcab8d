"""`python -m dashboard -c etc/dashboard.yaml` (console script `slotproxy-dashboard`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiohttp import web

from .app import create_app
from .config import ConfigError, check_secure, is_loopback, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slotproxy-dashboard",
                                     description="slotproxy dashboard (control plane)")
    parser.add_argument("-c", "--config", help="YAML config file (etc/dashboard.yaml)")
    parser.add_argument("--listen", help="host:port to serve the API on (default "
                                         "127.0.0.1:18080)")
    parser.add_argument("--log-level", help="debug, info, warning, error")
    args = parser.parse_args(argv)
    try:
        cfg = load(args.config, listen=args.listen, log_level=args.log_level)
        check_secure(cfg)
    except ConfigError as e:
        print(f"slotproxy-dashboard: {e}", file=sys.stderr)
        return 2
    if cfg.nice:
        # Before any thread starts (Linux nice values are per thread; new ones inherit it).
        os.setpriority(os.PRIO_PROCESS, 0, max(cfg.nice, os.getpriority(os.PRIO_PROCESS, 0)))
    logging.basicConfig(level=cfg.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("dashboard")
    if not is_loopback(cfg.listen[0]):
        log.warning("serving on %s: the API is reachable from other hosts", cfg.listen_addr)
    log.info("dashboard %s: store %s, cluster %r, listening on http://%s", cfg.ident,
             cfg.store.kind, cfg.cluster, cfg.listen_addr)
    # run_app turns SIGINT/SIGTERM into an orderly shutdown: cleanup_ctx resigns leadership.
    web.run_app(create_app(cfg), host=cfg.listen[0], port=cfg.listen[1], print=None,
                access_log=None, handle_signals=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
