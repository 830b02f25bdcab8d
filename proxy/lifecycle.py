"""Running a proxy process: the event loop it runs on and its start-serve-drain life, shared
by the plain proxy (`python -m proxy`) and a worker process (`python -m proxy.workers`)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol


class App(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def loop_runner(use_uvloop: bool, warn: bool = True
                ) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """uvloop.run when wanted and installed, else asyncio.run."""
    if use_uvloop:
        try:
            import uvloop

            return uvloop.run
        except ImportError:
            if warn:
                logging.getLogger("slotproxy").warning(
                    "uvloop not installed: using asyncio's loop")
    return asyncio.run


async def serve_until_stopped(app: App, stop: asyncio.Event) -> None:
    """Start `app`, serve until SIGTERM/SIGINT (or `stop` is set otherwise), drain it."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
    except BaseException:
        await app.stop()
        raise
    await stop.wait()
    await app.stop()


def run_process(run: Callable[[Coroutine[Any, Any, Any]], Any], main: Coroutine[Any, Any, Any],
                label: str, errors: tuple[type[Exception], ...] = (OSError,)) -> int:
    """Run the process's main coroutine; its exit code (an error is one line on stderr)."""
    try:
        code = run(main)
    except errors as e:
        print(f"{label}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return code if isinstance(code, int) else 0
