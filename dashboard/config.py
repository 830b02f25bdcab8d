"""Dashboard configuration: one frozen dataclass with every default, loaded from YAML.

Problems are reported as `ConfigError` naming the field, so `python -m dashboard` prints one line.
The admin token may come from the environment (`slotcore.contract.TOKEN_ENV`) so it stays out
of files; `slotcore.contract.resolve_token` is the one precedence rule (environment over file).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from slotcore.addr import join_addr, split_addr
from slotcore.contract import HEARTBEAT_INTERVAL, TOKEN_ENV, resolve_token
from slotcore.keyslot import DEFAULT_SLOTS, SLOT_COUNTS

from .store.base import Store
from .store.keys import DEFAULT_PREFIX, Keys


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class StoreConfig:
    kind: str = "file"                       # "file" | "etcd"
    path: str = ".slotproxy/store"           # file: the directory (relative to the config file)
    endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)  # etcd
    lease_ttl: int = 10                      # etcd: seconds a dead leader keeps the lock
    timeout: float = 3.0                     # etcd: per request
    prefix: str = DEFAULT_PREFIX

    def open(self) -> Store:
        if self.kind == "file":
            from .store.file import FileStore
            return FileStore(self.path)
        from .store.etcd import EtcdStore
        return EtcdStore(list(self.endpoints), lease_ttl=self.lease_ttl, timeout=self.timeout)


@dataclass(frozen=True, slots=True)
class SentinelConfig:
    """Automatic failover with Redis Sentinel (`control/sentinel.py`); off without `sentinels:`.

    The leader dashboard makes every sentinel monitor every group's master under the name
    `master_prefix + gid` with these settings, and follows the failovers they perform."""

    quorum: int = 2                      # sentinels that must agree the master is down
    down_after_ms: int = 5000            # unreachable this long = subjectively down
    failover_timeout_ms: int = 60000     # sentinel's failover-timeout
    password: str | None = None          # the sentinels' own requirepass
    username: str | None = None          # ... and ACL user
    auth_pass: str | None = None         # the backends' password (default: backend.password)
    auth_user: str | None = None         # the backends' ACL user (default: backend.username)
    master_prefix: str = ""              # default: "slotproxy-<cluster>-g"
    poll_interval: float = 1.0           # get-master-addr-by-name poll (events make it faster)
    timeout: float = 1.0                 # per sentinel command
    history: int = 50                    # failovers kept for the API


@dataclass(frozen=True, slots=True)
class BackendAuth:
    """How the dashboard logs in to the groups' redis servers (health, replication, promote),
    and what replicas use to authenticate to their master (`masterauth` / `masteruser`).
    Named like the proxy's `backend.password` / `backend.username`: use the same values."""

    password: str | None = None
    username: str | None = None              # an ACL user; None = the default user


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    listen: tuple[str, int] = ("127.0.0.1", 18080)
    cluster: str = "default"                 # one topology per name (the store key prefix)
    slots: int = DEFAULT_SLOTS               # used only when the store holds no topology yet
    admin_token: str | None = None
    dashboard_id: str | None = None          # default: host:port we listen on
    advertise: str | None = None             # URL others reach us at (shown as leader info)
    store: StoreConfig = field(default_factory=StoreConfig)
    push_timeout: float = 3.0                # per proxy, for slot-map pushes
    health_interval: float = 1.0             # redis INFO polling period
    health_timeout: float = 1.0
    # Heartbeat age after which a proxy shows "stale": five missed beats.
    proxy_stale_after: float = 5 * HEARTBEAT_INTERVAL
    # No migration batch starts while a registered proxy was not heard from this long (proxies
    # refuse slots in transit after the same time without contact; keep the two equal).
    fence_timeout: float = 10.0
    migration: dict[str, Any] = field(default_factory=dict)  # initial migrate Settings values
    sentinels: tuple[str, ...] = ()          # "host:port" of each Redis Sentinel (failover)
    sentinel: SentinelConfig = field(default_factory=SentinelConfig)
    backend: BackendAuth = field(default_factory=BackendAuth)
    # Replication: how long `group promote` waits for the replica to catch up with the master
    # while the group's slots are locked (keep it below the proxies' migration.lock_timeout,
    # after which a held request is answered -TRYAGAIN), and the longest wait an API caller
    # may ask for.
    promote_timeout: float = 5.0
    max_wait: float = 300.0
    # Initial auto-balance settings (dashboard/balance/settings.py); the store's win once an
    # operator changed them. Checked at startup.
    autobalance: dict[str, Any] = field(default_factory=dict)
    log_level: str = "info"
    # CPU niceness the dashboard process gives itself at startup (0-19; 0: unchanged). On a
    # host it shares with proxies or redis-servers, a migration's mover then yields the CPU to
    # the data path (docs/migration.md, "CPU priority"); it only ever lowers the priority.
    nice: int = 0

    @property
    def keys(self) -> Keys:
        return Keys(cluster=self.cluster, prefix=self.store.prefix)

    @property
    def listen_addr(self) -> str:
        return join_addr(*self.listen)

    @property
    def ident(self) -> str:
        return self.dashboard_id or f"{socket.gethostname()}:{self.listen[1]}"

    @property
    def url(self) -> str:
        return self.advertise or f"http://{self.listen_addr}"


def parse_hostport(value: object, what: str) -> tuple[str, int]:
    # ":port" listens on loopback and port 0 means any free port; a bare port is refused.
    if isinstance(value, str) and ":" in value:
        with contextlib.suppress(ValueError):
            return split_addr(value, default_host="127.0.0.1")
    raise ConfigError(f"{what}: expected 'host:port', got {value!r}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def from_dict(data: dict[str, Any], base: Path | None = None,
              env: dict[str, str] | None = None) -> DashboardConfig:
    """Build and validate a config; relative store paths are resolved against `base`."""
    env = os.environ if env is None else env
    data = dict(data or {})
    known = {f.name for f in fields(DashboardConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    kw: dict[str, Any] = {}
    if "listen" in data:
        kw["listen"] = parse_hostport(data.pop("listen"), "listen")
    store_data = dict(data.pop("store", None) or {})
    store_known = {f.name for f in fields(StoreConfig)}
    bad = sorted(set(store_data) - store_known)
    if bad:
        raise ConfigError(f"unknown store key(s): {', '.join(bad)}")
    if isinstance(store_data.get("endpoints"), str):
        store_data["endpoints"] = [store_data["endpoints"]]
    if "endpoints" in store_data:
        store_data["endpoints"] = tuple(store_data["endpoints"])
    store = StoreConfig(**store_data)
    if store.kind not in ("file", "etcd"):
        raise ConfigError(f"store.kind: expected 'file' or 'etcd', got {store.kind!r}")
    if store.kind == "file" and base is not None and not Path(store.path).is_absolute():
        store = replace(store, path=str(base / store.path))
    kw["store"] = store
    backend_data = dict(data.pop("backend", None) or {})
    bad = sorted(set(backend_data) - {f.name for f in fields(BackendAuth)})
    if bad:
        raise ConfigError(f"unknown backend key(s): {', '.join(bad)}")
    kw["backend"] = BackendAuth(**{k: str(v) for k, v in backend_data.items() if v is not None})
    for name in ("push_timeout", "health_interval", "health_timeout", "proxy_stale_after",
                 "fence_timeout", "promote_timeout", "max_wait"):
        if name in data:
            kw[name] = float(data.pop(name))
    kw["sentinels"], kw["sentinel"] = _sentinels(data.pop("sentinels", None),
                                                 data.pop("sentinel", None),
                                                 str(data.get("cluster") or "default"))
    kw.update({k: v for k, v in data.items() if v is not None})
    cfg = DashboardConfig(**kw)
    # Proxies heartbeat every HEARTBEAT_INTERVAL: a fence or stale bound shorter than 1.5
    # intervals would call a healthy proxy stale between two heartbeats (and block migrations).
    for name in ("fence_timeout", "proxy_stale_after"):
        if getattr(cfg, name) < 1.5 * HEARTBEAT_INTERVAL:
            raise ConfigError(f"{name}: expected at least {1.5 * HEARTBEAT_INTERVAL:g} s "
                              f"(1.5 times the proxies' heartbeat interval), "
                              f"got {getattr(cfg, name):g}")
    if not 0 < cfg.promote_timeout <= cfg.max_wait:
        raise ConfigError(f"promote_timeout: expected 0 < seconds <= max_wait ({cfg.max_wait}), "
                          f"got {cfg.promote_timeout}")
    if cfg.autobalance:
        from .balance.settings import Settings, SettingsError
        try:
            Settings().update(dict(cfg.autobalance))
        except SettingsError as e:
            raise ConfigError(f"autobalance: {e}") from None
    if cfg.slots not in SLOT_COUNTS:
        raise ConfigError(f"slots: expected one of {SLOT_COUNTS}, got {cfg.slots}")
    if isinstance(cfg.nice, bool) or not isinstance(cfg.nice, int) or not 0 <= cfg.nice <= 19:
        raise ConfigError(f"nice: expected an integer from 0 to 19, got {cfg.nice!r}")
    return replace(cfg, admin_token=resolve_token(configured=cfg.admin_token, env=env))


def _positive(value: object, conv: type, what: str, expected: str) -> Any:
    try:
        out = conv(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected {expected}, got {value!r}") from None
    if out <= 0:
        raise ConfigError(f"{what}: must be > 0, got {value!r}")
    return out


def _sentinels(addrs: object, section: object, cluster: str
               ) -> tuple[tuple[str, ...], SentinelConfig]:
    """The `sentinels:` list and the `sentinel:` knobs, validated (names say which field)."""
    if addrs is None:
        addrs = []
    if isinstance(addrs, str):
        addrs = [a for a in addrs.split(",") if a.strip()]
    if not isinstance(addrs, list | tuple):
        raise ConfigError(f"sentinels: expected a list of 'host:port', got {addrs!r}")
    out = tuple(join_addr(*parse_hostport(str(a).strip(), "sentinels")) for a in addrs)
    if len(set(out)) != len(out):
        raise ConfigError("sentinels: an address is listed twice")
    data = dict(section or {}) if isinstance(section, dict | type(None)) else None
    if data is None:
        raise ConfigError(f"sentinel: expected a mapping, got {section!r}")
    known = {f.name for f in fields(SentinelConfig)}
    bad = sorted(set(data) - known)
    if bad:
        raise ConfigError(f"unknown sentinel key(s): {', '.join(bad)}")
    for name in ("quorum", "down_after_ms", "failover_timeout_ms", "history"):
        if name in data:
            data[name] = _positive(data[name], int, f"sentinel.{name}", "an integer")
    for name in ("poll_interval", "timeout"):
        if name in data:
            data[name] = _positive(data[name], float, f"sentinel.{name}", "seconds")
    prefix = str(data.get("master_prefix") or f"slotproxy-{cluster}-g")
    if not prefix or any(c.isspace() for c in prefix):
        raise ConfigError(f"sentinel.master_prefix: no spaces allowed, got {prefix!r}")
    data["master_prefix"] = prefix
    cfg = SentinelConfig(**data)
    if out and cfg.quorum > len(out):
        raise ConfigError(f"sentinel.quorum {cfg.quorum} is more than the {len(out)} "
                          "sentinels listed: no failover could ever be agreed")
    return out, cfg


def load(path: str | os.PathLike[str] | None, env: dict[str, str] | None = None,
         **overrides: Any) -> DashboardConfig:
    data: dict[str, Any] = {}
    base = None
    if path is not None:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"cannot read config {p}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: bad YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        base = p.resolve().parent
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_dict(data, base=base, env=env)


def check_secure(cfg: DashboardConfig) -> None:
    """Mutations always need the token, so a dashboard without one would be read-only for good."""
    if not cfg.admin_token:
        raise ConfigError(f"no admin token: set admin_token in the config or {TOKEN_ENV} in the "
                          "environment (mutating API calls need it as a Bearer token)")
