"""The dashboard API client shared by proxyctl's commands and `proxyctl up`, and the CLI's
errors and exit codes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from slotcore.contract import TOKEN_ENV

DEFAULT_DASHBOARD = "http://127.0.0.1:18080"
DASHBOARD_ENV = "SLOTPROXY_DASHBOARD"

EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


class ApiClient:
    """Synchronous JSON-over-HTTP client (stdlib only: the CLI must start fast)."""

    def __init__(self, url: str, token: str | None, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, auth: bool = False) -> Any:
        """`auth`: send the token on a GET too (reads that show clients' data: slowlog)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token and (method != "GET" or auth):
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error") or e.reason
            except (ValueError, AttributeError):
                message = e.reason
            hint = ""
            if e.code == 401 and not self.token:
                hint = f" (pass --token or set {TOKEN_ENV})"
            raise CliError(f"{method} {path}: HTTP {e.code}: {message}{hint}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CliError(f"dashboard {self.url} unreachable: {reason}",
                           EXIT_UNREACHABLE) from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)
