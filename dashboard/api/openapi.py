"""OpenAPI 3.0 description of the dashboard API, generated from `routes.ENDPOINTS`.

Paths, methods, summaries and which calls need the token come from the endpoint table itself;
only the request/response schemas are written out here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from slotcore.contract import DASHBOARD_SLOTMAP


class EndpointSpec(Protocol):
    """What the document is made of (`routes.Endpoint`, which imports this module)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def handler(self) -> Callable[..., Any]: ...
    @property
    def summary(self) -> str: ...
    @property
    def body(self) -> str | None: ...
    @property
    def needs_token(self) -> bool: ...

_ADDR = {"type": "string", "example": "127.0.0.1:6379", "description": "host:port"}

# How a server added as a replica is made to replicate (group create and add-server).
_REPLICATION = {
    "replicate": {"type": "boolean", "default": True,
                  "description": "issue REPLICAOF on replicas (false: only record them, their "
                                 "replication is configured outside slotproxy)"},
    "force": {"type": "boolean", "default": False,
              "description": "replicate even when the server holds keys or replicates from "
                             "another master (its data is replaced)"},
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}}},
    "GroupCreate": {"type": "object", "properties": {
        "id": {"type": "integer", "minimum": 1, "maximum": 9999,
               "description": "default: the smallest free id"},
        "master": _ADDR,
        "replicas": {"type": "array", "items": _ADDR},
        **_REPLICATION}},
    "ServerAdd": {"type": "object", "required": ["addr"], "properties": {
        "addr": _ADDR,
        "role": {"type": "string", "enum": ["master", "replica"],
                 "description": "default: master if the group has none, else replica"},
        **_REPLICATION}},
    "Promote": {"type": "object", "required": ["addr"], "properties": {
        "addr": _ADDR,
        "timeout": {"type": "number", "description": "seconds the replica may take to catch "
                    "up while the group's slots are locked (default: promote_timeout)"}}},
    "GroupConfig": {"type": "object", "example": {"min-replicas-to-write": 1,
                                                   "min-replicas-max-lag": 10},
                    "additionalProperties": {"type": "integer", "minimum": 0}},
    "SlotAssign": {"type": "object", "required": ["assign"], "properties": {
        "assign": {"type": "array", "items": {
            "type": "object", "required": ["slots", "group"], "properties": {
                "slots": {"type": "string", "example": "0-5460,8000"},
                "group": {"type": "integer"}}}},
        "force": {"type": "boolean", "default": False,
                  "description": "reassign slots owned by another group without moving data"}}},
    "ProxyRegister": {"type": "object", "required": ["id", "addr", "admin"], "properties": {
        "id": {"type": "string"}, "addr": _ADDR, "admin": _ADDR}},
    "MigrationStart": {"type": "object", "required": ["slots", "to"], "properties": {
        "slots": {"type": "string", "example": "0-1023,2048"},
        "to": {"type": "integer", "description": "target group id"}}},
    "MigrationSettings": {"type": "object", "properties": {
        "batch_size": {"type": "integer", "description": "keys per MIGRATE"},
        "batch_bytes": {"type": "integer", "description": "bytes per MIGRATE"},
        "keys_per_sec": {"type": "integer", "description": "per source group, 0 = no limit"},
        "max_concurrent_slots": {"type": "integer", "description": "slots per batch"},
        "big_key_bytes": {"type": "integer",
                          "description": "above this a key is copied in chunks under a fence"},
        "stall_ms": {"type": "number", "description": "bound for one command of a chunk copy"},
        "chunk_elements": {"type": "integer"}, "migrate_timeout_ms": {"type": "integer"},
        "paused": {"type": "boolean"},
        "adaptive": {"type": "boolean",
                     "description": "size batches from measured stalls, rest on high latency"},
        "target_stall_ms": {"type": "number", "description": "budget for one MIGRATE"},
        "min_batch": {"type": "integer"}, "max_batch": {"type": "integer"},
        "latency_factor": {"type": "number",
                           "description": "rest while source latency > factor x baseline"},
        "latency_slack_ms": {"type": "number",
                             "description": "... and more than this above the baseline"},
        "max_pause_ms": {"type": "number", "description": "longest rest between batches"},
        "probe_interval_ms": {"type": "number", "description": "latency probe period"},
        "proxy_poll_ms": {"type": "number",
                          "description": "read the proxies' p99 per group this often while "
                                         "moving (0 = not used)"},
        "proxy_window_ms": {"type": "number", "description": "window of that p99"},
        "client_slack_ms": {"type": "number",
                            "description": "rest while the proxies' p99 > factor x its "
                                           "baseline and more than this above it"},
        "recheck_s": {"type": "number",
                      "description": "the proxies' p99 high this long: rest one window and "
                                     "re-measure it (0 = never)"},
        "stall_share": {"type": "number",
                        "description": "one MIGRATE blocks at most this share of the "
                                       "clients' baseline p99 (0 = target_stall_ms only)"}}},
    "Rebalance": {"type": "object", "properties": {
        "dry_run": {"type": "boolean", "default": True},
        "mode": {"type": "string", "enum": ["count", "load"], "default": "count"},
        "weights": {"type": "object", "additionalProperties": {"type": "number"},
                    "description": "per-group weight overrides for this plan"},
        "drain": {"type": "array", "items": {"type": "integer"},
                  "description": "groups to empty (their weight is set to 0)"},
        "sample_seconds": {"type": "number", "default": 1.0},
        "tolerance": {"type": "number", "default": 0.05}}},
    "BigKeyScan": {"type": "object", "properties": {
        "count": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100,
                  "description": "SCAN COUNT (keys sized per pipeline)"},
        "pause_ms": {"type": "number", "minimum": 0, "maximum": 10000, "default": 10,
                     "description": "pause between two pages of one group"},
        "top": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20,
                "description": "biggest keys kept per type"},
        "samples": {"type": "integer", "minimum": 1, "maximum": 100, "default": 5,
                    "description": "MEMORY USAGE ... SAMPLES"}}},
    "GroupWeight": {"type": "object", "required": ["weight"], "properties": {
        "weight": {"type": "number", "minimum": 0}}},
    "SlotMap": {"type": "object", "properties": {
        "epoch": {"type": "integer"}, "slots": {"type": "integer", "enum": [1024, 16384]},
        "groups": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {"master": _ADDR,
                                             "replicas": {"type": "array", "items": _ADDR}}}},
        "ranges": {"type": "array", "description": "[start, end, gid] inclusive",
                   "items": {"type": "array", "items": {"type": "integer"}}},
        "transit": {"type": "array", "description": "[start, end, from_gid, to_gid, "
                    "\"locked\"|\"migrating\"]: slots being moved (listed in ranges under "
                    "to_gid)", "items": {"type": "array"}},
        "fenced": {"type": "array", "items": {"type": "string"},
                   "description": "hex of big keys being copied: requests to them are held"},
        "proxies": {"type": "array", "description": "the live proxies (leader only): what "
                    "proxies describe as the cluster's nodes in CLUSTER SLOTS/NODES/SHARDS",
                    "items": {"type": "object", "properties": {"id": {"type": "string"},
                                                               "addr": _ADDR}}}}},
}

_DURATION = {"type": "string", "example": "30s",
             "description": "seconds, or a duration like 250ms, 30s, 5m, 1h"}
SCHEMAS["AutoBalanceSettings"] = {"type": "object", "properties": {
    "enabled": {"type": "boolean", "default": False},
    "dry_run": {"type": "boolean", "default": False,
                "description": "plan and report each round, move nothing"},
    "interval": {**_DURATION, "description": "between rounds; the ops/s window"},
    "weights": {"type": "object", "description": "what load means, each 0..1000",
                "properties": {m: {"type": "number"} for m in ("memory", "keys", "ops")}},
    "tolerance": {"type": "number", "description": "% above/below a group's target"},
    "aim": {"type": "number", "description": "share of the tolerance a plan aims for"},
    "quiet": {**_DURATION, "description": "out of tolerance this long before acting"},
    "smoothing": {**_DURATION, "description": "half-life of the ops/s average"},
    "max_slots_per_hour": {"type": "integer"},
    "cooldown": {**_DURATION, "description": "a moved slot stays this long"},
    "window": {"type": "string", "nullable": True, "example": "sat,sun 02:00-05:00",
               "description": "maintenance window, UTC (null: always)"},
    "hot_share": {"type": "number", "description": "% of a group's fair ops/s share one "
                  "slot may carry before it is moved (0 = off)"},
    "hot_key_share": {"type": "number",
                      "description": "% of a hot slot's ops/s one key carries: reported"},
    "history": {"type": "integer", "description": "rounds kept"}}}

_ERRORS = {
    "400": "invalid request (bad JSON, range, address or id)",
    "401": "missing or wrong admin token",
    "404": "unknown group, server or proxy",
    "409": "refused by the current topology (e.g. group owns slots, slot migrating)",
    "502": "some proxies did not acknowledge; the change was rolled back",
    "503": "this dashboard is a standby (or the store is unreachable)",
}


def spec(endpoints: Iterable[EndpointSpec]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for r in endpoints:
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.handler.__name__}
        params = re.findall(r"{(\w+)}", r.path)
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": {"type": "integer" if p == "gid" else "string"}}
                                for p in params]
        if r.body:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{r.body}"}}}}
        ok: dict[str, Any] = {"description": "OK", "content": {"application/json": {}}}
        if r.path == DASHBOARD_SLOTMAP:
            ok["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/SlotMap"}
        created = r.method == "POST" and not any(
            w in r.path for w in ("register", "assign", "cancel", "rebalance"))
        responses = {"201" if created else "200": ok}
        codes = ["400", "503"] if r.method == "GET" else list(_ERRORS)
        for code in codes:
            responses[code] = {"description": _ERRORS[code], "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}
        op["responses"] = responses
        if r.needs_token:
            op["security"] = [{"bearer": []}]
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "slotproxy dashboard", "version": "1",
                 "description": "Control plane of slotproxy: groups, slots, proxies. Errors "
                                "are JSON {\"error\": ...} with a real HTTP status."},
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
