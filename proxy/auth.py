"""Client authentication against the proxy's own password (and optional username)."""

from __future__ import annotations

import hmac

from .config import ProxyConfig


def check_password(cfg: ProxyConfig, user: bytes | None, password: bytes) -> bool:
    # `AUTH password` means user "default" (Redis 6+), and clients send HELLO 3 AUTH default
    # password for it, so "default" is accepted alongside the configured username.
    if user is not None and user != b"default" and user != (cfg.username or "").encode():
        return False
    return hmac.compare_digest(password, (cfg.password or "").encode())
