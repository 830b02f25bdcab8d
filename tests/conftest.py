"""Suite-wide rules.

An unhandled exception in an event loop fails the test. Every loop pytest-asyncio creates for a
test comes from `pytest_asyncio_loop_factories` below (pytest-asyncio >= 1.3's way to customise
test loops) and carries `LoopErrors.handler` as its exception handler. The loop calls that
handler for what nobody else handled: "Task exception was never retrieved", an exception in a
callback or protocol method, a failed `call_soon` callback. Those are bugs that a passing test
would otherwise hide in a log line. After the test (and its fixtures, and a gc pass so that
dropped tasks report), the teardown fails with each recorded exception and its traceback.

Contexts without an exception ("Task was destroyed but it is pending!", aiohttp's "Unclosed
client session") are resource warnings, not failures: they are passed to the default handler,
which logs them.
"""

from __future__ import annotations

import asyncio
import gc
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest


class LoopErrors:
    """Collects the unhandled exceptions of the test loops."""

    def __init__(self) -> None:
        self.errors: list[dict[str, Any]] = []

    def handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("exception") is not None:
            self.errors.append(context)
        loop.default_exception_handler(context)

    def new_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self.handler)
        return loop

    def take(self) -> list[dict[str, Any]]:
        out, self.errors = self.errors, []
        return out

    @staticmethod
    def describe(errors: list[dict[str, Any]]) -> str:
        parts = []
        for ctx in errors:
            exc = ctx["exception"]
            what = ctx.get("message", "unhandled exception in the event loop")
            where = ctx.get("task") or ctx.get("future") or ctx.get("handle") or ""
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            parts.append(f"{what} {where}\n{tb}".rstrip())
        return (f"{len(errors)} unhandled exception(s) in the test's event loop:\n\n"
                + "\n\n".join(parts))


LOOP_ERRORS = LoopErrors()


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": LOOP_ERRORS.new_loop}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    LOOP_ERRORS.take()  # whatever an earlier test's garbage reported late is not this test's
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    result = yield
    gc.collect()  # a task dropped with its exception unretrieved reports when collected
    errors = LOOP_ERRORS.take()
    if errors:
        pytest.fail(LoopErrors.describe(errors), pytrace=False)
    return result
