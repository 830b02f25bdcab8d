"""Helpers of the HA integration tests: replicas that replicate (REPLICAOF on the test's own
redis-servers), per-server command counts, and the proxy's view of its replicas."""

from __future__ import annotations

from pathlib import Path

import redis

from tests.harness import ProxyProcess, RedisServer, until


def rc(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=10,
                       password=server.password)


def replicate(replica: RedisServer, master: RedisServer) -> None:
    """REPLICAOF `master` on `replica`, and wait until it is in sync."""
    rc(replica).execute_command("REPLICAOF", master.host, str(master.port))
    wait_in_sync(replica, master)


def wait_in_sync(replica: RedisServer, master: RedisServer, timeout: float = 30.0) -> None:
    def synced() -> bool:
        r = rc(replica).info("replication")
        m = rc(master).info("replication")
        return (r.get("master_link_status") == "up" and r.get("master_port") == master.port
                and r.get("slave_repl_offset") == m.get("master_repl_offset"))
    until(synced, timeout, f"{replica.addr} in sync with {master.addr}")


def calls(server: RedisServer, command: str) -> int:
    """How many times `server` executed `command` (INFO commandstats)."""
    stats = rc(server).info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def readonly_errors(server: RedisServer) -> int:
    """Writes `server` refused as a replica (-READONLY): a write the proxy sent it."""
    stats = rc(server).info("errorstats")
    return int(stats.get("errorstat_READONLY", {}).get("count", 0))


def proxy_replicas(proxy: ProxyProcess, gid: int = 1) -> dict[str, dict[str, str]]:
    """The proxy's INFO lines `group_<gid>_replicaN:addr=...,status=...`, by address."""
    info = proxy_info(proxy)
    return {str(v["addr"]): {k: str(x) for k, x in v.items()}
            for k, v in info.items() if k.startswith(f"group_{gid}_replica")}


def proxy_info(proxy: ProxyProcess) -> dict:
    """INFO proxy, as redis-py parses it."""
    return proxy.client().info("proxy")


def wait_replica_status(proxy: ProxyProcess, addr: str, status: str,
                        timeout: float = 30.0) -> dict[str, str]:
    return until(lambda: (r := proxy_replicas(proxy).get(addr)) and r["status"] == status and r,
                 timeout, f"replica {addr} {status} in the proxy's view")


def servers(base: Path, n: int) -> list[RedisServer]:
    return [RedisServer(base / f"s{i}").start() for i in range(n)]
