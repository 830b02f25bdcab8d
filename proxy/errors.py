"""Error replies, worded as Redis (and Redis Cluster) word them so clients recognise them."""

from __future__ import annotations

from slotcore.resp import encode_error

NOAUTH = encode_error("NOAUTH Authentication required.")
WRONGPASS = encode_error("WRONGPASS invalid username-password pair or user is disabled.")
CROSSSLOT = encode_error("CROSSSLOT Keys in request don't hash to the same slot")
CLUSTERDOWN = encode_error("CLUSTERDOWN Hash slot not served")
NOPROTO = encode_error("NOPROTO sorry, this protocol version is not supported.")
NO_PASSWORD = encode_error(
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
DB_RANGE = encode_error("ERR DB index is out of range")
NOT_INTEGER = encode_error("ERR value is not an integer or out of range")
SYNTAX = encode_error("ERR syntax error")


def wrong_args(name: str) -> bytes:
    return encode_error(f"ERR wrong number of arguments for '{name}' command")


def unknown_command(argv: list[bytes]) -> bytes:
    # Same shape as Redis 7: the name and the first arguments, each cut short.
    name = argv[0][:128].decode(errors="replace")
    args = " ".join(f"'{a[:128].decode(errors='replace')}'" for a in argv[1:20])
    return encode_error(f"ERR unknown command '{name}', with args beginning with: {args}")


def unknown_subcommand(name: str, sub: bytes) -> bytes:
    return encode_error(
        f"ERR unknown subcommand '{sub[:128].decode(errors='replace')}'. "
        f"Try {name.upper()} HELP.")


def not_supported(name: str, reason: str = "") -> bytes:
    label = name.replace("|", " ").upper()
    suffix = f" ({reason})" if reason else ""
    return encode_error(f"ERR command '{label}' is not supported by the proxy{suffix}")


def backend_error(addr: str, what: str = "unavailable") -> bytes:
    return encode_error(f"ERR backend {addr} {what}")
