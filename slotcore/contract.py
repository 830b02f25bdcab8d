"""What the dashboard and the proxies agree on outside the slot map: admin API paths, the admin
token and where it comes from, and the heartbeat period."""

from __future__ import annotations

import os
from collections.abc import Mapping

# The environment variable holding the admin token, read by the proxy, the dashboard and
# proxyctl alike.
TOKEN_ENV = "SLOTPROXY_ADMIN_TOKEN"

# A proxy re-registers with the dashboard this often (seconds); the dashboard counts a proxy
# stale after a few missed beats (its proxy_stale_after).
HEARTBEAT_INTERVAL = 2.0

# The proxy's admin API, as the dashboard calls it.
PROXY_INFO = "/api/info"
PROXY_STATS = "/api/stats"
PROXY_SLOTS = "/api/slots"  # GET the map in force, PUT a new one
PROXY_SLOWLOG = "/api/slowlog"  # GET the proxy's slow log (?count=N), newest first
PROXY_METRICS = "/metrics"  # Prometheus text format
# GET the latency histograms: {"bounds_us": [...], "commands": {name: {"count", "sum_us",
# "buckets"}}, "groups": {gid: {...}}}; buckets has len(bounds_us) + 1 counts (last: over).
PROXY_LATENCY = "/api/latency"
PROXY_HOTKEYS = "/api/hotkeys"  # GET the sampled top-k keys of the current and last window

# The dashboard's API, as proxies call it.
DASHBOARD_REGISTER = "/api/v1/proxies/register"
DASHBOARD_SLOTMAP = "/api/v1/slotmap"


def resolve_token(explicit: str | None = None, configured: str | None = None,
                  env: Mapping[str, str] | None = None) -> str | None:
    """The one precedence rule for the admin token, on every side.

    A value given on the command line wins; then the environment (so a committed config file
    need not hold the secret, and a deployment can override it); then the config file.
    """
    environ = os.environ if env is None else env
    return explicit or environ.get(TOKEN_ENV) or configured or None
