"""`host:port`, the one spelling of a server address everywhere in the cluster."""

from __future__ import annotations


def split_addr(addr: str, default_host: str | None = None) -> tuple[str, int]:
    """"host:port" (or "[v6]:port") → (host, port); raises ValueError saying what is wrong.

    With `default_host`, a bare port ("19000") or an empty host (":19000") means that host
    (listen addresses). Port 0 is accepted: for a listen address it means "any free port".
    """
    text = str(addr).strip()
    host, sep, port_s = text.rpartition(":")
    if not sep:
        host, port_s = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        if default_host is None:
            raise ValueError(f"{addr!r} is not host:port")
        host = default_host
    try:
        port = int(port_s)
    except ValueError:
        raise ValueError(f"{addr!r} is not host:port") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return host, port


def join_addr(host: str, port: int) -> str:
    """(host, port) → "host:port" ("[v6]:port" for an IPv6 literal)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
