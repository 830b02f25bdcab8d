"""Reading the counters: the INFO "# Proxy" section and the admin API's stats, from one place."""

from __future__ import annotations

import os

from . import __version__
from ._accel import name as hot_path_name
from .client.context import Services
from .routing.replicas import POLICY_NAMES


def group_summaries(services: Services) -> list[dict]:
    router = services.router
    backends = services.stats.backends
    out = []
    for g in router.groups.values():
        c = backends.get(g.master)
        out.append({
            "gid": g.gid,
            "master": g.master,
            "up": g.up,
            "slots": router.slot_count.get(g.gid, 0),
            "requests": c.requests if c else 0,
            "errors": c.errors if c else 0,
            **replica_summary(services, g.gid, g.replicas),
        })
    return out


def replica_summary(services: Services, gid: int, replicas: tuple[str, ...]) -> dict:
    """Reads from replicas of one group: its replicas' last health check and read counters."""
    reads = services.router.reads
    c = reads.counters(gid)
    listed = []
    for addr in replicas:
        st = reads.status.get(addr)
        listed.append({
            "addr": addr,
            "good": bool(st and st.good),
            "reason": st.reason if st else "not checked yet",
            "lag_bytes": st.lag_bytes if st else None,
            "lag_seconds": st.lag_seconds if st else None,
        })
    return {"replicas": listed, "replica_reads": c.replica, "replica_fallbacks": c.fallback,
            "replica_refused": c.refused}


def blocked_clients(services: Services) -> int:
    """Clients blocked in BLPOP, XREAD BLOCK, WAIT ... (the proxy's own count)."""
    return services.blocking.blocked_clients if services.blocking is not None else 0


def proxy_section(services: Services) -> str:
    cfg = services.cfg
    stats = services.stats
    router = services.router
    groups = group_summaries(services)
    dedicated = services.pool.dedicated
    lines = [
        "# Proxy",
        f"proxy_version:{__version__}",
        f"proxy_id:{cfg.resolved_proxy_id()}",
        f"process_id:{os.getpid()}",
        f"tcp_port:{services.port}",
        f"hot_path:{hot_path_name()}",
        f"uptime_in_seconds:{int(services.loop_time() - stats.started)}",
        f"connected_clients:{len(services.clients)}",
        f"maxclients:{cfg.limits.max_clients}",
        f"blocked_clients:{blocked_clients(services)}",
        f"total_blocking_commands:{getattr(services.blocking, 'total', 0)}",
        f"dedicated_connections:{dedicated.blocking.leased}",
        f"max_dedicated_per_backend:{cfg.backend.max_dedicated}",
        f"dedicated_refused:{dedicated.blocking.refused}",
        f"total_connections_received:{stats.connections_received}",
        f"rejected_connections:{stats.rejected_connections}",
        f"total_commands_processed:{stats.commands}",
        f"instantaneous_ops_per_sec:{int(stats.ops_per_sec)}",
        f"slots:{router.nslots}",
        f"slot_map_epoch:{router.epoch}",
        f"groups:{len(groups)}",
        f"groups_up:{sum(1 for g in groups if g['up'])}",
        f"pubsub_clients:{sum(1 for c in services.clients.clients if c.mode.name == 'subscribed')}",
        f"pubsub_connections:{stats.pubsub_connections}",
        f"pubsub_connects:{stats.pubsub_connects}",
        f"pubsub_connections_refused:{stats.pubsub_refused}",
        f"pubsub_messages_delivered:{stats.pubsub_messages}",
        f"pubsub_bytes_delivered:{stats.pubsub_bytes}",
        f"pubsub_clients_dropped:{stats.pubsub_dropped}",
        f"transactions_started:{stats.txn_multi}",
        f"transactions_executed:{stats.txn_exec}",
        f"transactions_aborted:{stats.txn_aborted}",
        f"transactions_watch_failed:{stats.txn_watch_failed}",
        f"transactions_discarded:{stats.txn_discarded}",
        f"transactions_queued_commands:{stats.txn_queued}",
        f"leased_connections:{dedicated.watch.leased}",
        f"leased_refused:{dedicated.watch.refused}",
        f"scan_restarts:{stats.scan_restarts}",
        f"client_net_input_bytes:{stats.bytes_in}",
        f"client_net_output_bytes:{stats.bytes_out}",
        f"requests_held:{len(router.transit.held)}",
        f"held_requests_total:{router.transit.held_total}",
        f"tryagain_total:{router.transit.tryagain_total}",
        f"migrate_pulls:{router.transit.pulls}",
        f"latency_sample_every:{stats.meter.every if stats.meter.enabled else 0}",
        f"slowlog_len:{len(stats.meter.slowlog)}",
    ]
    # A worker process says which one it is (proxy/workers/); totals: the supervisor's API.
    lines += [f"{k}:{v}" for k, v in services.info_overrides.get("Proxy", {}).items()]
    lines += [
        f"read_from:{POLICY_NAMES[router.reads.default_policy]}",
        f"replica_reads:{sum(g['replica_reads'] for g in groups)}",
        f"replica_read_fallbacks:{sum(g['replica_fallbacks'] for g in groups)}",
        f"replica_reads_refused:{sum(g['replica_refused'] for g in groups)}",
        f"replica_checks:{router.reads.rounds}",
        f"group_repoints:{len(router.repoints)}",
    ]
    for g in groups:
        lines.append(
            f"group_{g['gid']}:master={g['master']},status={'up' if g['up'] else 'down'},"
            f"slots={g['slots']},requests={g['requests']},errors={g['errors']},"
            f"replicas={len(g['replicas'])},"
            f"replicas_in_sync={sum(1 for r in g['replicas'] if r['good'])},"
            f"replica_reads={g['replica_reads']}")
        for i, r in enumerate(g["replicas"]):
            lag = "" if r["lag_bytes"] is None else f",lag_bytes={r['lag_bytes']}"
            lag += "" if r["lag_seconds"] is None else f",lag_seconds={r['lag_seconds']:g}"
            status = "ok" if r["good"] else "skipped"
            lines.append(f"group_{g['gid']}_replica{i}:addr={r['addr']},status={status}{lag},"
                         f"reason={r['reason'].replace(',', ' ')}")
    return "\r\n".join(lines) + "\r\n"


def stats_json(services: Services) -> dict:
    stats = services.stats
    return {
        "clients": len(services.clients),
        "blocked_clients": blocked_clients(services),
        "commands": stats.commands,
        "ops_per_sec": round(stats.ops_per_sec, 1),
        "connections_received": stats.connections_received,
        "uptime": round(services.loop_time() - stats.started, 1),
        "epoch": services.router.epoch,
        "read_from": POLICY_NAMES[services.router.reads.default_policy],
        "groups": {
            str(g["gid"]): {k: g[k] for k in ("master", "up", "requests", "errors", "replicas",
                                              "replica_reads", "replica_fallbacks",
                                              "replica_refused")}
            for g in group_summaries(services)
        },
    }
