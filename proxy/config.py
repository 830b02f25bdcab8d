"""Proxy configuration: one frozen dataclass tree with every default in one place.

Loaded from YAML (`etc/proxy.yaml`) and/or command-line flags. Every problem is reported as a
`ConfigError` whose message names the offending field, so `python -m proxy` can print one line.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from slotcore.addr import split_addr
from slotcore.contract import resolve_token
from slotcore.keyslot import DEFAULT_SLOTS, SLOT_COUNTS
from slotcore.ranges import parse_ranges
from slotcore.slotmap import GroupSpec, SlotMap

from .protocol.request import Limits


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class BackendConfig:
    connections: int = 1            # per group; each client is pinned to one, keeping its order
    password: str | None = None     # sent as AUTH on connect
    username: str | None = None     # AUTH username password (ACL users)
    db: int = 0                     # SELECTed on connect
    connect_timeout: float = 1.0
    request_timeout: float = 5.0    # a reply older than this fails the connection (0 = never)
    reconnect_min: float = 0.05     # backoff after a failed connect, doubling ...
    reconnect_max: float = 2.0      # ... up to this
    max_leased: int = 64            # dedicated connections (WATCH) per backend address
    max_dedicated: int = 128        # per backend: connections for blocked clients (BLPOP, ...)
    # A blocked call (BLPOP ...) whose master went away waits this long for a failover (or the
    # master's return) to re-issue it, then gets -TRYAGAIN (only for groups with replicas or
    # with sentinels followed; else the connection error is answered at once).
    failover_wait: float = 15.0


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_clients: int = 10000
    max_pipeline: int = 1024                   # requests in flight per client; reading pauses
    max_bulk_len: int = 512 * 1024 * 1024      # proto-max-bulk-len
    max_multibulk_len: int = 1024 * 1024
    max_inline_len: int = 64 * 1024
    client_output_buffer: int = 64 * 1024 * 1024  # unread reply bytes before a client is dropped
    max_queued: int = 10000                    # commands queued in one MULTI
    max_queued_bytes: int = 64 * 1024 * 1024   # bytes queued in one MULTI
    max_query_buffer: int = 64 * 1024 * 1024  # unparsed request bytes behind a blocked command

    def resp_limits(self) -> Limits:
        return Limits(
            max_bulk_len=self.max_bulk_len,
            max_multibulk_len=self.max_multibulk_len,
            max_inline_len=self.max_inline_len,
        )


@dataclass(frozen=True, slots=True)
class PubSubConfig:
    # Dedicated subscriber connections this proxy may open to one backend address (each
    # subscribed client has at most one per group); over it, SUBSCRIBE gets an error.
    max_backend_connections: int = 5000
    max_subscriptions: int = 100_000         # channels + patterns + shard channels per client
    output_buffer: int = 32 * 1024 * 1024     # unread bytes before a subscriber is dropped
    resubscribe_grace: float = 5.0            # old owner kept this long after a slot moves


@dataclass(frozen=True, slots=True)
class MigrationConfig:
    lock_timeout: float = 10.0      # a request held for a locked slot gets -TRYAGAIN after this
    fence_timeout: float = 10.0     # no dashboard contact this long: refuse slots in transit
    migrate_timeout: float = 5.0    # timeout of the on-access MIGRATE


# CONFIG SET through the proxy: only these parameters (fnmatch patterns, lowercase), applied to
# every server of every group. Never `HARD_DENIED_CONFIG`, whatever the operator lists.
DEFAULT_SET_ALLOWED: tuple[str, ...] = (
    "maxmemory-policy", "maxmemory-samples", "notify-keyspace-events",
    "slowlog-log-slower-than", "slowlog-max-len", "latency-monitor-threshold",
    "hash-max-listpack-*", "hash-max-ziplist-*", "list-max-listpack-size",
    "list-max-ziplist-size", "list-compress-depth", "set-max-intset-entries",
    "set-max-listpack-*", "zset-max-listpack-*", "zset-max-ziplist-*",
    "stream-node-max-*", "lazyfree-lazy-*", "activedefrag", "active-defrag-*",
    "hz", "busy-reply-threshold", "lua-time-limit",
)
# Files, paths, secrets, replication and anything that executes or exposes the host.
HARD_DENIED_CONFIG: tuple[str, ...] = (
    "dir", "dbfilename", "logfile", "pidfile", "aclfile", "appendfilename", "appenddirname",
    "cluster-config-file", "unixsocket*", "requirepass", "masterauth", "masteruser",
    "replicaof", "slaveof", "tls-*", "bind*", "port", "protected-mode", "enable-*-command",
    "rename-command", "include", "loadmodule", "daemonize", "supervised", "syslog-*",
    "always-show-logo", "cluster-*", "save", "appendonly", "dynamic-hz", "oom-score-adj*",
    "shutdown-*", "repl-*", "replica-*", "slave-*", "min-replicas-*", "min-slaves-*",
)


@dataclass(frozen=True, slots=True)
class ConfigCommandConfig:
    set_allowed: tuple[str, ...] = DEFAULT_SET_ALLOWED


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    # Answer CLUSTER SLOTS/NODES/SHARDS/INFO... as a Redis Cluster whose nodes are the proxies
    # (cluster clients work); off: as a non-cluster Redis ("cluster support disabled").
    masquerade: bool = True
    # CLUSTER COUNTKEYSINSLOT/GETKEYSINSLOT SCAN the slot's group: give up (with an error)
    # after this many keys scanned on one group.
    slot_scan_limit: int = 1_000_000


MAX_WORKERS = 256


@dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """`workers: N` (N >= 2): how the supervisor keeps its worker processes (proxy/workers/)."""

    restart_backoff_min: float = 0.1   # s before restarting a dead worker, doubling ...
    restart_backoff_max: float = 5.0   # ... up to this; reset once a worker ran stable_after
    stable_after: float = 30.0         # s: a worker that lived this long was not crash-looping
    crash_loop_restarts: int = 5       # deaths within crash_loop_window: stop restarting it
    crash_loop_window: float = 60.0
    push_timeout: float = 5.0          # a worker must apply a slot map within this
    start_timeout: float = 30.0        # a (re)started worker must be serving within this
    hang_timeout: float = 15.0         # a worker not answering its control socket this long
                                       # is killed (and restarted)


READ_FROM = ("master", "prefer-replica", "replica")
REPLICA_BALANCE = ("least-pending", "round-robin")


@dataclass(frozen=True, slots=True)
class ReadConfig:
    """Reads from replicas (README "Reads from replicas"); YAML top-level keys `read_from`,
    `replica_balance`, `replica_max_lag_bytes`, `replica_max_lag_seconds`,
    `replica_check_interval`, `replica_check_timeout`."""

    # Where read-only commands go for clients that did not say READONLY/READWRITE: "master"
    # (everything to masters, the plain fast path), "prefer-replica" (a replica in sync, else
    # the master), "replica" (a replica in sync, else an error: the master never serves reads).
    read_from: str = "master"
    balance: str = "least-pending"       # among the good replicas: fewest replies owed, or turns
    # A replica further behind the master's offset, or whose last ack to the master is older,
    # is skipped (0: no bound).
    max_lag_bytes: int = 1024 * 1024
    max_lag_seconds: float = 10.0
    check_interval: float = 1.0          # INFO replication of every master and replica, this often
    check_timeout: float = 1.0           # an INFO not answered within this: the replica is skipped


@dataclass(frozen=True, slots=True)
class SentinelConfig:
    """A standalone proxy following Redis Sentinel itself (no dashboard); YAML top-level keys
    `sentinels`, `sentinel_master_names`, `sentinel_master_name_format`, `sentinel_password`,
    `sentinel_username`, `sentinel_timeout`."""

    addrs: tuple[str, ...] = ()          # "host:port" of every sentinel; () = not used
    names: dict[int, str] = field(default_factory=dict)  # gid -> the name sentinels monitor it as
    name_format: str = "slotproxy-g{gid}"  # for groups not in `names`
    password: str | None = None
    username: str | None = None
    timeout: float = 1.0                 # connect and reply timeout per sentinel
    reconnect_max: float = 2.0           # backoff between reconnects to one sentinel, up to this

    def master_name(self, gid: int) -> str:
        return self.names.get(gid) or self.name_format.format(gid=gid)


@dataclass(frozen=True, slots=True)
class HotKeysConfig:
    # The sampled top-k of keys by requests (proxy/observe/hotkeys.py, GET /api/hotkeys).
    enabled: bool = True
    sample_rate: int = 32         # 1 in N requests offers its first key
    capacity: int = 64            # counters of the Space-Saving summary (the k of top-k)
    window: float = 60.0          # seconds, aligned to multiples of it on the wall clock
    max_key_bytes: int = 1024     # longer keys are counted truncated to this


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    listen: tuple[str, int] = ("127.0.0.1", 19000)
    slots: int = DEFAULT_SLOTS
    password: str | None = None          # clients must AUTH with this
    username: str | None = None          # optional ACL-style user for `AUTH user pass`
    idle_timeout: float = 0.0            # seconds; 0 = never close idle clients
    shutdown_timeout: float = 10.0       # graceful drain bound on SIGTERM
    tcp_backlog: int = 1024
    groups: dict[int, GroupSpec] = field(default_factory=dict)
    slot_map: SlotMap | None = None
    backend: BackendConfig = BackendConfig()
    limits: LimitsConfig = LimitsConfig()
    migration: MigrationConfig = MigrationConfig()
    pubsub: PubSubConfig = PubSubConfig()
    cluster: ClusterConfig = ClusterConfig()
    config: ConfigCommandConfig = ConfigCommandConfig()  # the CONFIG command (YAML `config:`)
    hotkeys: HotKeysConfig = HotKeysConfig()
    reads: ReadConfig = ReadConfig()
    sentinel: SentinelConfig = SentinelConfig()
    admin_listen: tuple[str, int] | None = None
    admin_token: str | None = None
    dashboard: str | None = None     # URL, or several comma-separated (leader + standbys)
    advertise: str | None = None     # client address to register (default: the bound one)
    proxy_id: str | None = None
    command_table: str = "backend"       # "backend": COMMAND from a backend, else builtin
    log_level: str = "info"
    use_hiredis: bool = True
    # The compiled hot path (proxy._accel) when it is built; False: the pure-Python twins.
    use_accelerator: bool = True
    # Observability (proxy.observe.meter): per-command counts, latency histograms and the
    # slow log. `metrics: false` turns the request-path part off (no call counts, no timing);
    # one request in `latency_sample_every` is timed (1 = all: exact latency and slow log, at
    # a CPU cost a Python proxy cannot hide; bench/README.md). A prime, so a periodic mix of
    # commands (GET, SET, GET, SET ...) is not always sampled on the same one.
    metrics: bool = True
    latency_sample_every: int = 61
    slowlog_log_slower_than: int = 10_000  # µs, as Redis's slowlog-log-slower-than (<0: off)
    slowlog_max_len: int = 128             # entries kept, as Redis's slowlog-max-len
    workers: int = 1                     # >= 2: that many processes on `listen` (SO_REUSEPORT)
    supervisor: SupervisorConfig = SupervisorConfig()

    def with_overrides(self, **kw: Any) -> ProxyConfig:
        return replace(self, **kw)

    @property
    def listen_addr(self) -> str:
        return f"{self.listen[0]}:{self.listen[1]}"

    def resolved_proxy_id(self) -> str:
        return self.proxy_id or f"{socket.gethostname()}:{self.listen[1]}"


def parse_addr(value: Any, field_name: str) -> tuple[str, int]:
    """'host:port' or a bare port (host 127.0.0.1) → (host, port)."""
    text = str(value).strip()
    if text.startswith(":"):
        text = "0.0.0.0" + text  # ":19000" listens on every interface
    try:
        return split_addr(text, default_host="127.0.0.1")
    except ValueError as e:
        raise ConfigError(f"{field_name}: {e}") from None


def _sub(cls: type, data: Any, name: str) -> Any:
    """Build a flat dataclass from a mapping, naming any unknown or mistyped field."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping")
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown field (known: {', '.join(sorted(known))})")
        default = getattr(defaults, key)
        kwargs[key] = _coerce(value, default, f"{name}.{key}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, name: str) -> Any:
    if value is None:
        return None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            n = _parse_size(value) if isinstance(value, str) else value
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        if n < 0:
            raise ConfigError(f"{name}: must not be negative")
        return n
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{name}: must not be negative")
        return float(value)
    return str(value)


_SIZE_SUFFIX = {"k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def _parse_size(text: str) -> int:
    """'64mb', '512m', '1024' → bytes (Redis-style suffixes)."""
    t = text.strip().lower()
    for suffix in sorted(_SIZE_SUFFIX, key=len, reverse=True):
        if t.endswith(suffix):
            return int(t[: -len(suffix)]) * _SIZE_SUFFIX[suffix]
    return int(t)


def _parse_groups(data: Any) -> dict[int, GroupSpec]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("groups: expected a mapping of group id → {master: host:port}")
    groups: dict[int, GroupSpec] = {}
    for key, value in data.items():
        try:
            gid = int(key)
        except (TypeError, ValueError):
            raise ConfigError(f"groups.{key}: group id must be an integer") from None
        if gid <= 0:
            raise ConfigError(f"groups.{key}: group id must be positive")
        if isinstance(value, str):
            value = {"master": value}
        if not isinstance(value, dict) or "master" not in value:
            raise ConfigError(f"groups.{key}: expected {{master: host:port}}")
        host, port = parse_addr(value["master"], f"groups.{key}.master")
        replicas = tuple(
            "{}:{}".format(*parse_addr(r, f"groups.{key}.replicas"))
            for r in value.get("replicas") or ()
        )
        groups[gid] = GroupSpec(gid, f"{host}:{port}", replicas)
    return groups


def _parse_slot_map(data: Any, nslots: int, groups: dict[int, GroupSpec]) -> SlotMap | None:
    """`slot_map: [{range: "0-8191", group: 1}, ...]`; absent → spread evenly over the groups."""
    if not groups:
        if data:
            raise ConfigError("slot_map: given but no groups are configured")
        return None
    if data is None:
        return SlotMap.even(nslots, groups, epoch=1)
    if not isinstance(data, list):
        raise ConfigError("slot_map: expected a list of {range: A-B, group: N}")
    assignments: list[tuple[int, int, int]] = []
    for i, item in enumerate(data):
        where = f"slot_map[{i}]"
        if not isinstance(item, dict) or "range" not in item or "group" not in item:
            raise ConfigError(f"{where}: expected {{range: A-B, group: N}}")
        try:
            slots = parse_ranges(str(item["range"]), nslots)
        except ValueError as e:
            raise ConfigError(f"{where}.range: {e}") from None
        gid = item["group"]
        if not isinstance(gid, int) or gid not in groups:
            raise ConfigError(f"{where}.group: unknown group {gid!r}")
        run_start = prev = slots[0]
        for s in [*slots[1:], None]:
            if s is not None and s == prev + 1:
                prev = s
                continue
            assignments.append((run_start, prev, gid))
            if s is not None:
                run_start = prev = s
    try:
        return SlotMap.from_ranges(nslots, groups, assignments, epoch=1)
    except ValueError as e:
        raise ConfigError(f"slot_map: {e}") from None


_TOP_LEVEL = {
    "listen", "slots", "password", "username", "idle_timeout", "shutdown_timeout", "tcp_backlog",
    "groups", "slot_map", "backend", "limits", "admin_listen", "admin_token", "dashboard",
    "proxy_id", "command_table", "log_level", "use_hiredis", "migration", "advertise",
    "pubsub", "cluster", "config", "use_accelerator", "workers", "supervisor",
    "metrics", "latency_sample_every", "slowlog_log_slower_than", "slowlog_max_len",
    "hotkeys",
}
# Reads from replicas and the standalone sentinel follower (top-level keys, see ReadConfig and
# SentinelConfig): YAML key -> dataclass field.
_READ_KEYS = {
    "read_from": "read_from", "replica_balance": "balance",
    "replica_max_lag_bytes": "max_lag_bytes", "replica_max_lag_seconds": "max_lag_seconds",
    "replica_check_interval": "check_interval", "replica_check_timeout": "check_timeout",
}
_SENTINEL_KEYS = {
    "sentinels", "sentinel_master_names", "sentinel_master_name_format", "sentinel_password",
    "sentinel_username", "sentinel_timeout",
}
_TOP_LEVEL |= set(_READ_KEYS) | _SENTINEL_KEYS


def parse_read_from(value: Any, name: str = "read_from") -> str:
    text = str(value).strip().lower()
    if text not in READ_FROM:
        raise ConfigError(f"{name}: must be one of {', '.join(READ_FROM)}, not {value!r}")
    return text


def _parse_reads(data: dict[str, Any]) -> ReadConfig:
    defaults = ReadConfig()
    kw: dict[str, Any] = {}
    for key, attr in _READ_KEYS.items():
        if data.get(key) is None:
            continue
        if attr == "read_from":
            kw[attr] = parse_read_from(data[key])
        elif attr == "balance":
            text = str(data[key]).strip().lower()
            if text not in REPLICA_BALANCE:
                raise ConfigError(f"{key}: must be one of {', '.join(REPLICA_BALANCE)}")
            kw[attr] = text
        else:
            kw[attr] = _coerce(data[key], getattr(defaults, attr), key)
    cfg = ReadConfig(**kw)
    if cfg.check_interval <= 0:
        raise ConfigError("replica_check_interval: must be positive")
    if cfg.check_timeout <= 0:
        raise ConfigError("replica_check_timeout: must be positive")
    return cfg


def parse_sentinel_addrs(value: Any, name: str = "sentinels") -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(f"{name}: expected a list of host:port")
    return tuple("{}:{}".format(*parse_addr(a, name)) for a in items if str(a).strip())


def _parse_sentinel(data: dict[str, Any]) -> SentinelConfig:
    if data.get("sentinels") is None:
        for key in _SENTINEL_KEYS - {"sentinels"}:
            if data.get(key) is not None:
                raise ConfigError(f"{key}: given but no sentinels are configured")
        return SentinelConfig()
    kw: dict[str, Any] = {"addrs": parse_sentinel_addrs(data["sentinels"])}
    if not kw["addrs"]:
        raise ConfigError("sentinels: no sentinel given")
    names = data.get("sentinel_master_names")
    if names is not None:
        if not isinstance(names, dict):
            raise ConfigError("sentinel_master_names: expected a mapping of group id -> name")
        parsed: dict[int, str] = {}
        for k, v in names.items():
            try:
                parsed[int(k)] = str(v)
            except (TypeError, ValueError):
                raise ConfigError(f"sentinel_master_names.{k}: group id must be an integer") \
                    from None
        kw["names"] = parsed
    fmt = data.get("sentinel_master_name_format")
    if fmt is not None:
        fmt = str(fmt)
        try:
            fmt.format(gid=1)
        except (KeyError, IndexError, ValueError):
            raise ConfigError("sentinel_master_name_format: only {gid} may be used") from None
        kw["name_format"] = fmt
    for key in ("password", "username"):
        if data.get(f"sentinel_{key}") is not None:
            kw[key] = str(data[f"sentinel_{key}"])
    if data.get("sentinel_timeout") is not None:
        kw["timeout"] = _coerce(data["sentinel_timeout"], 1.0, "sentinel_timeout")
        if kw["timeout"] <= 0:
            raise ConfigError("sentinel_timeout: must be positive")
    return SentinelConfig(**kw)


def _parse_config_command(data: Any) -> ConfigCommandConfig:
    if data is None:
        return ConfigCommandConfig()
    if not isinstance(data, dict):
        raise ConfigError("config: expected a mapping")
    for key in data:
        if key != "set_allowed":
            raise ConfigError(f"config.{key}: unknown field (known: set_allowed)")
    allowed = data.get("set_allowed")
    if allowed is None:
        return ConfigCommandConfig()
    if isinstance(allowed, str):
        allowed = allowed.replace(",", " ").split()
    if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
        raise ConfigError("config.set_allowed: expected a list of parameter names")
    return ConfigCommandConfig(tuple(a.strip().lower() for a in allowed if a.strip()))


def config_from_dict(data: dict[str, Any]) -> ProxyConfig:
    if not isinstance(data, dict):
        raise ConfigError("config: expected a mapping at the top level")
    for key in data:
        if key not in _TOP_LEVEL:
            raise ConfigError(f"{key}: unknown field")
    defaults = ProxyConfig()
    nslots = data.get("slots", DEFAULT_SLOTS)
    if nslots not in SLOT_COUNTS:
        raise ConfigError(f"slots: must be 16384 or 1024, not {nslots!r}")
    groups = _parse_groups(data.get("groups"))
    kw: dict[str, Any] = {
        "slots": nslots,
        "groups": groups,
        "slot_map": _parse_slot_map(data.get("slot_map"), nslots, groups),
        "backend": _sub(BackendConfig, data.get("backend"), "backend"),
        "limits": _sub(LimitsConfig, data.get("limits"), "limits"),
        "migration": _sub(MigrationConfig, data.get("migration"), "migration"),
        "pubsub": _sub(PubSubConfig, data.get("pubsub"), "pubsub"),
        "cluster": _sub(ClusterConfig, data.get("cluster"), "cluster"),
        "config": _parse_config_command(data.get("config")),
        "hotkeys": _sub(HotKeysConfig, data.get("hotkeys"), "hotkeys"),
        "supervisor": _sub(SupervisorConfig, data.get("supervisor"), "supervisor"),
        "reads": _parse_reads(data),
        "sentinel": _parse_sentinel(data),
    }
    if "workers" in data:
        kw["workers"] = check_workers(_coerce(data["workers"], 1, "workers"), "workers")
    if "listen" in data:
        kw["listen"] = parse_addr(data["listen"], "listen")
    if data.get("admin_listen") is not None:
        kw["admin_listen"] = parse_addr(data["admin_listen"], "admin_listen")
    for name in ("password", "username", "admin_token", "proxy_id"):
        if data.get(name) is not None:
            kw[name] = str(data[name])
    dash = data.get("dashboard")
    if dash is not None:
        kw["dashboard"] = ",".join(dash) if isinstance(dash, list) else str(dash)
    if data.get("advertise") is not None:
        kw["advertise"] = "{}:{}".format(*parse_addr(data["advertise"], "advertise"))
    # Secrets may come from the environment so configs can be committed without them.
    kw["admin_token"] = resolve_token(configured=kw.get("admin_token"))
    for name in ("idle_timeout", "shutdown_timeout"):
        if name in data:
            kw[name] = _coerce(data[name], getattr(defaults, name), name)
    if "tcp_backlog" in data:
        kw["tcp_backlog"] = _coerce(data["tcp_backlog"], 0, "tcp_backlog")
    if "command_table" in data:
        if data["command_table"] not in ("backend", "builtin"):
            raise ConfigError("command_table: must be 'backend' or 'builtin'")
        kw["command_table"] = data["command_table"]
    if "log_level" in data:
        level = str(data["log_level"]).lower()
        if level not in ("debug", "info", "warning", "error"):
            raise ConfigError("log_level: must be debug, info, warning or error")
        kw["log_level"] = level
    if "use_hiredis" in data:
        kw["use_hiredis"] = _coerce(data["use_hiredis"], True, "use_hiredis")
    if "use_accelerator" in data:
        kw["use_accelerator"] = _coerce(data["use_accelerator"], True, "use_accelerator")
    _parse_observe(data, defaults, kw)
    lim: LimitsConfig = kw["limits"]
    if lim.max_pipeline < 1:
        raise ConfigError("limits.max_pipeline: must be at least 1")
    if lim.max_clients < 1:
        raise ConfigError("limits.max_clients: must be at least 1")
    if kw["backend"].max_leased < 1:
        raise ConfigError("backend.max_leased: must be at least 1")
    if kw["backend"].connections < 1:
        raise ConfigError("backend.connections: must be at least 1")
    if kw["backend"].max_dedicated < 0:
        raise ConfigError("backend.max_dedicated: must be at least 0")
    hk: HotKeysConfig = kw["hotkeys"]
    for name in ("sample_rate", "capacity", "max_key_bytes"):
        if getattr(hk, name) < 1:
            raise ConfigError(f"hotkeys.{name}: must be at least 1")
    if hk.capacity > 100_000:
        raise ConfigError("hotkeys.capacity: at most 100000")
    if hk.window < 1:
        raise ConfigError("hotkeys.window: must be at least 1 second")
    sup: SupervisorConfig = kw["supervisor"]
    if sup.crash_loop_restarts < 1:
        raise ConfigError("supervisor.crash_loop_restarts: must be at least 1")
    if sup.restart_backoff_min > sup.restart_backoff_max:
        raise ConfigError("supervisor.restart_backoff_min: must not exceed restart_backoff_max")
    for name in ("push_timeout", "start_timeout", "hang_timeout"):
        if getattr(sup, name) <= 0:
            raise ConfigError(f"supervisor.{name}: must be positive")
    cfg = ProxyConfig(**kw)
    check_sentinel(cfg)
    if cfg.slot_map is None and not cfg.dashboard:
        raise ConfigError(
            "groups: no backend groups configured (and no dashboard to get them from)")
    return cfg


def _parse_observe(data: dict[str, Any], defaults: ProxyConfig, kw: dict[str, Any]) -> None:
    """The metrics and slow-log settings (top level, as Redis's slowlog-* are)."""
    for name in ("metrics", "latency_sample_every", "slowlog_max_len"):
        if name in data:
            kw[name] = _coerce(data[name], getattr(defaults, name), name)
    if "slowlog_log_slower_than" in data:  # negative is allowed: it turns the log off
        v = data["slowlog_log_slower_than"]
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"slowlog_log_slower_than: expected an integer (µs), got {v!r}")
        kw["slowlog_log_slower_than"] = v
    if kw.get("latency_sample_every", 1) < 1:
        raise ConfigError("latency_sample_every: must be at least 1 (1 = time every request)")
    if not 0 <= kw.get("slowlog_max_len", 0) <= SLOWLOG_MAX_LEN_LIMIT:
        raise ConfigError(f"slowlog_max_len: must be 0..{SLOWLOG_MAX_LEN_LIMIT}")


# The slow log's entries are kept in memory: bounded (Redis takes any long; a proxy fleet's
# operator is better served by an error than by a log that eats the heap).
SLOWLOG_MAX_LEN_LIMIT = 100_000
def check_workers(n: int, name: str) -> int:
    """`workers` is 1 (one process, no supervisor) to MAX_WORKERS."""
    if not 1 <= n <= MAX_WORKERS:
        raise ConfigError(f"{name}: must be between 1 and {MAX_WORKERS}, not {n}")
    return n


def load_config(path: str | os.PathLike[str]) -> ProxyConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config: {e.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: invalid YAML: {e}".replace("\n", " ")) from None
    return config_from_dict(data)


def backends_config(listen: str, backends: str, nslots: int = DEFAULT_SLOTS) -> ProxyConfig:
    """Config for `--backends h:p,h:p`: one group per backend, slots spread evenly."""
    items = [b for b in backends.split(",") if b.strip()]
    if not items:
        raise ConfigError("--backends: no backend given")
    groups = {i + 1: {"master": b.strip()} for i, b in enumerate(items)}
    return config_from_dict({"listen": listen, "slots": nslots, "groups": groups})


def check_sentinel(cfg: ProxyConfig) -> None:
    """A proxy follows the sentinels itself only when standalone: with a dashboard, the
    dashboard is the one authority on who is master (it follows the sentinels and pushes the
    map), and two authorities could disagree during a failover."""
    if cfg.sentinel.addrs and cfg.dashboard:
        raise ConfigError("sentinels: not with a dashboard (the dashboard follows the "
                          "sentinels and pushes the map; configure them there)")
    unknown = sorted(set(cfg.sentinel.names) - set(cfg.groups))
    if cfg.sentinel.addrs and unknown:
        raise ConfigError(f"sentinel_master_names: unknown group {unknown[0]}")
