"""`GET /metrics`: the proxy's figures in the Prometheus text format, built at scrape time.

A custom collector reads the plain counters and arrays of the one stats object (and the
router, pool and client registry) when Prometheus scrapes; nothing on the request path knows
Prometheus exists. The text is `prometheus_client`'s own exposition, so `promtool check
metrics` accepts it.

Series (every name prefixed `slotproxy_`): build_info, start_time_seconds, uptime_seconds;
commands_total / command_rejected_total / command_errors_total and the
command_duration_seconds histogram by command; group_duration_seconds and group_up by group;
backend_requests_total / backend_errors_total / backend_connects_total by backend address;
backend_connections by address and state; connected_clients, blocked_clients,
connections_received_total, rejected_connections_total; client_received_bytes_total,
client_sent_bytes_total; requests_held, held_requests_total, tryagain_total,
migrate_pulls_total, migrate_pull_failures_total; slotmap_epoch, slots_owned; slowlog_length,
latency_sample_every.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from . import histogram
from .meter import Timings

# The classic text format (0.0.4): what every Prometheus 2.x (Debian's is 2.42) asks for;
# generate_latest writes exactly that format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LE = [f"{b / 1e6:.6g}" for b in histogram.BOUNDS_US] + ["+Inf"]
_CONN_STATES = ("down", "connecting", "up", "closed")  # backend.conn's DOWN..CLOSED


def histogram_buckets(t: Timings) -> list[tuple[str, float]]:
    """Prometheus's cumulative `le` buckets of one fixed-bucket histogram."""
    return list(zip(_LE, histogram.cumulative(t.buckets), strict=True))


class ProxyCollector:
    """Reads `services` (proxy.client.context.Services, duck-typed: this module stays below
    the client package) at every collect()."""

    def __init__(self, services: Any, version: str) -> None:
        self.services = services
        self.version = version

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: the series depend on what has been seen

    def collect(self) -> Iterator[Metric]:
        s = self.services
        stats = s.stats
        meter = stats.meter
        router = s.router
        p = "slotproxy_"

        info = GaugeMetricFamily(p + "build_info", "slotproxy build and identity (always 1)",
                                 labels=["version", "python", "proxy_id"])
        info.add_metric([self.version, platform.python_version(), s.cfg.resolved_proxy_id()], 1)
        yield info
        yield GaugeMetricFamily(p + "start_time_seconds", "Unix time the proxy started",
                                value=stats.started_wall)
        yield GaugeMetricFamily(p + "uptime_seconds", "Seconds since the proxy started",
                                value=s.loop_time() - stats.started)

        calls = CounterMetricFamily(p + "commands", "Commands run, by command (exact)",
                                    labels=["command"])
        rejected = CounterMetricFamily(
            p + "command_rejected", "Commands refused before running (arity, unknown "
            "subcommand, unsupported), by command", labels=["command"])
        errors = CounterMetricFamily(
            p + "command_errors", "Error replies to timed commands, by command (all of them "
            "with latency_sample_every 1)", labels=["command"])
        lat = HistogramMetricFamily(
            p + "command_duration_seconds", "Proxy-side latency of timed commands, request "
            "parsed to reply queued (backend included)", labels=["command"])
        for row in meter.rows():
            calls.add_metric([row.name], row.calls)
            rejected.add_metric([row.name], row.rejected)
            errors.add_metric([row.name], row.timings.failed)
            if row.timings.count:
                lat.add_metric([row.name], histogram_buckets(row.timings),
                               row.timings.sum_ns / 1e9)
        yield from (calls, rejected, errors, lat)

        glat = HistogramMetricFamily(
            p + "group_duration_seconds", "Proxy-side latency of timed requests forwarded to "
            "a group (\"*\": split over several groups)", labels=["group"])
        for gid, t in sorted(meter.groups.items()):
            glat.add_metric([gid], histogram_buckets(t), t.sum_ns / 1e9)
        yield glat

        gup = GaugeMetricFamily(p + "group_up", "1 when a lane to the group's master is up",
                                labels=["group", "master"])
        owned = GaugeMetricFamily(p + "slots_owned", "Slots the group owns in the map in force",
                                  labels=["group"])
        group_of: dict[str, tuple[str, str]] = {}
        for g in router.groups.values():
            gid = str(g.gid)
            gup.add_metric([gid, g.master], 1 if g.up else 0)
            owned.add_metric([gid], router.slot_count.get(g.gid, 0))
            group_of[g.master] = (gid, "master")
            for r in g.spec.replicas:
                group_of.setdefault(r, (gid, "replica"))
        yield gup
        yield owned

        labels = ["addr", "group", "role"]
        breq = CounterMetricFamily(p + "backend_requests", "Requests written to a backend",
                                   labels=labels)
        berr = CounterMetricFamily(
            p + "backend_errors", "Error replies from a backend, plus requests refused "
            "because its connection was down", labels=labels)
        bcon = CounterMetricFamily(p + "backend_connects", "Connections made to a backend",
                                   labels=labels)
        for addr, c in sorted(stats.backends.items()):
            gid, role = group_of.get(addr, ("", "retired"))
            breq.add_metric([addr, gid, role], c.requests)
            berr.add_metric([addr, gid, role], c.errors)
            bcon.add_metric([addr, gid, role], c.connects)
        yield from (breq, berr, bcon)

        states: dict[tuple[str, str], int] = {}
        for conn in s.pool.all_conns():
            key = (conn.addr, _CONN_STATES[conn.state] if 0 <= conn.state < 4 else "unknown")
            states[key] = states.get(key, 0) + 1
        conns = GaugeMetricFamily(p + "backend_connections", "Shared backend connections "
                                  "(lanes) by state", labels=["addr", "state"])
        for (addr, st), n in sorted(states.items()):
            conns.add_metric([addr, st], n)
        yield conns
        dedicated = s.pool.dedicated
        ded = GaugeMetricFamily(p + "dedicated_connections", "Dedicated backend connections "
                                "held by clients (blocked calls, WATCH)", labels=["kind"])
        ded.add_metric(["blocking"], dedicated.blocking.leased)
        ded.add_metric(["watch"], dedicated.watch.leased)
        yield ded

        blocked = s.blocking.blocked_clients if s.blocking is not None else 0
        transit = router.transit
        g, c = GaugeMetricFamily, CounterMetricFamily
        for kind, name, doc, value in (
            (g, "connected_clients", "Client connections open now", len(s.clients)),
            (g, "blocked_clients", "Clients in a blocking call now", blocked),
            (c, "connections_received", "Client connections accepted",
             stats.connections_received),
            (c, "rejected_connections", "Client connections refused (max_clients, shutting "
             "down)", stats.rejected_connections),
            (c, "client_received_bytes", "Bytes read from clients", stats.bytes_in),
            (c, "client_sent_bytes", "Bytes written to clients", stats.bytes_out),
            (g, "requests_held", "Requests held now for a locked slot", len(transit.held)),
            (c, "held_requests", "Requests held for a locked slot or fenced key",
             transit.held_total),
            (c, "tryagain", "Requests answered -TRYAGAIN (held too long, dashboard lost, pull "
             "failed)", transit.tryagain_total),
            (c, "migrate_pulls", "On-access MIGRATEs of a migrating slot's keys", transit.pulls),
            (c, "migrate_pull_failures", "On-access MIGRATEs that failed",
             transit.pull_failures),
            (g, "slotmap_epoch", "Epoch of the slot map in force", router.epoch),
            (g, "slowlog_length", "Entries in the proxy's slow log", len(meter.slowlog)),
            (g, "latency_sample_every", "One request in this many is timed (0: metrics off)",
             meter.every if meter.enabled else 0),
        ):
            yield kind(p + name, doc, value=value)

def exposition(services: Any, version: str) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(services, version))  # type: ignore[arg-type]
    return generate_latest(registry)
