"""The plain request/reply mode: every command runs as it comes; the fast path is on."""

from __future__ import annotations

from ..context import Mode


class NormalMode(Mode):
    __slots__ = ()
    name = "normal"
    fast_path = True


NORMAL = NormalMode()
