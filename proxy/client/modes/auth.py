"""Before AUTH, when the proxy has a password: only AUTH, HELLO and QUIT run, as in Redis."""

from __future__ import annotations

from ...commands.table import CommandSpec
from ...errors import NOAUTH
from ..context import Client, Mode

# Commands a client may send before AUTH (as Redis allows).
AUTH_EXEMPT = frozenset({"auth", "hello", "quit"})


class AuthRequiredMode(Mode):
    __slots__ = ()
    name = "auth-required"
    fast_path = False

    def intercept(self, client: Client, spec: CommandSpec, argv: list[bytes],
                  packed: bytes) -> bool:
        if spec.name.partition("|")[0] in AUTH_EXEMPT:
            return False
        client.reply(NOAUTH)
        return True


AUTH_REQUIRED = AuthRequiredMode()
