"""The one HTTP client of the tests: JSON in, (status, JSON) out, bearer auth.

`Http` is synchronous (urllib, for tests that drive processes from a plain thread); `AsyncHttp`
is the same API over aiohttp for tests running in the event loop. Both share the header and
decoding rules below, so auth, JSON and error statuses behave the same whichever one a test
uses. An HTTP error status is a normal return value, never an exception.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

TOKEN = "test-token"

#: `token=True` means "the client's own token"; None/False/"" sends no Authorization header.
Token = str | bool | None


def headers(token: str | None, *, json_body: bool = False) -> dict[str, str]:
    out = {"Content-Type": "application/json"} if json_body else {}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


def encode(body: Any) -> bytes | None:
    return json.dumps(body).encode() if body is not None else None


def decode(raw: bytes) -> Any:
    """A JSON body; an empty body is None."""
    return json.loads(raw or b"null")


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return decode(self.body)


class _Base:
    default_timeout = 10.0

    def __init__(self, url: str, token: str | None = TOKEN, timeout: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout or self.default_timeout

    def _token(self, token: Token) -> str | None:
        if token is True:
            return self.token
        return token or None

    def _prepare(self, body: Any, data: bytes | None, token: Token) -> tuple[bytes | None,
                                                                          dict[str, str]]:
        payload = data if data is not None else encode(body)
        return payload, headers(self._token(token), json_body=payload is not None)

    @staticmethod
    def _expect(status: int, body: Any, ok: tuple[int, ...]) -> Any:
        assert status in ok, (status, body)
        return body


class Http(_Base):
    """Synchronous client on one base URL."""

    def request(self, method: str, path: str, body: Any = None, token: Token = True,
                data: bytes | None = None) -> Response:
        payload, hdrs = self._prepare(body, data, token)
        req = urllib.request.Request(self.url + path, data=payload, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return Response(resp.status, resp.headers.get("Content-Type", ""), resp.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers.get("Content-Type", ""), e.read())

    def call(self, method: str, path: str, body: Any = None, token: Token = True,
             data: bytes | None = None) -> tuple[int, Any]:
        resp = self.request(method, path, body, token, data)
        return resp.status, resp.json()

    def get(self, path: str) -> Any:
        return self._expect(*self.call("GET", path), (200,))

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        return self._expect(*self.call(method, path, body), (200, 201))

    def stream(self, path: str, token: Token = True) -> Any:
        """An open response to read line by line (event streams); close it when done."""
        req = urllib.request.Request(self.url + path, headers=headers(self._token(token)))
        return urllib.request.urlopen(req, timeout=self.timeout)


class AsyncHttp(_Base):
    """The same client for code running in the event loop (one aiohttp session per call)."""

    default_timeout = 60.0

    async def request(self, method: str, path: str, body: Any = None, token: Token = True,
                      data: bytes | None = None) -> Response:
        import aiohttp

        payload, hdrs = self._prepare(body, data, token)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as s, s.request(
                method, self.url + path, data=payload, headers=hdrs) as resp:
            return Response(resp.status, resp.headers.get("Content-Type", ""),
                            await resp.read())

    async def call(self, method: str, path: str, body: Any = None, token: Token = True,
                   data: bytes | None = None) -> tuple[int, Any]:
        resp = await self.request(method, path, body, token, data)
        return resp.status, resp.json()

    async def get(self, path: str) -> Any:
        return self._expect(*await self.call("GET", path), (200,))

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        return self._expect(*await self.call(method, path, body), (200, 201))


def http(method: str, url: str, body: Any = None, token: str | None = TOKEN,
         timeout: float = 10) -> tuple[int, Any]:
    """One call on a full URL: (status, JSON)."""
    return Http(url, token, timeout).call(method, "", body)
