"""Error replies, worded as Redis (and Redis Cluster) word them so clients recognise them."""

from __future__ import annotations

from slotcore.resp import encode_error

NOAUTH = encode_error("NOAUTH Authentication required.")
WRONGPASS = encode_error("WRONGPASS invalid username-password pair or user is disabled.")
CROSSSLOT = encode_error("CROSSSLOT Keys in request don't hash to the same slot")
CLUSTERDOWN = encode_error("CLUSTERDOWN Hash slot not served")
NOPROTO = encode_error("NOPROTO unsupported protocol version")  # Redis 7
NO_PASSWORD = encode_error(
    "ERR AUTH <password> called without any password configured for the default user. "
    "Are you sure your configuration is correct?"
)
DB_RANGE = encode_error("ERR DB index is out of range")
NOT_INTEGER = encode_error("ERR value is not an integer or out of range")
SYNTAX = encode_error("ERR syntax error")
PROTO_NOT_INTEGER = encode_error("ERR Protocol version is not an integer or out of range")
HELLO_NOAUTH = encode_error(
    "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO "
    "<proto> AUTH <user> <pass> option can be used to authenticate the client and select the "
    "RESP protocol version at the same time")
BAD_CLIENT_NAME = encode_error(
    "ERR Client names cannot contain spaces, newlines or special characters.")
NO_SUCH_CLIENT = encode_error("ERR No such client")
MAX_CLIENTS = encode_error("ERR max number of clients reached")
INVALID_COMMAND = encode_error("ERR Invalid command specified")
INVALID_ARGC = encode_error("ERR Invalid number of arguments specified for command")
NO_KEY_ARGS = encode_error("ERR The command has no key arguments")
# What Redis answers a client unblocked by CLIENT UNBLOCK ... ERROR, and a bad reason.
UNBLOCKED = encode_error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
UNBLOCK_REASON = encode_error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
INVALID_KEY_ARGS = encode_error("ERR Invalid arguments specified for command")
INVALID_CLIENT_ID = encode_error("ERR Invalid client ID")
CLIENT_ID_RANGE = encode_error("ERR client-id should be greater than 0")


def unknown_client_type(name: bytes) -> bytes:
    return encode_error(f"ERR Unknown client type '{name.decode(errors='replace')}'")


def no_such_user(name: bytes) -> bytes:
    return encode_error(f"ERR No such user '{name.decode(errors='replace')}'")


def protocol_error(message: str) -> bytes:
    return encode_error("ERR Protocol error: " + message)


def hello_syntax(opt: bytes) -> bytes:
    return encode_error(f"ERR Syntax error in HELLO option '{opt.decode(errors='replace')}'")


def unrecognized_option(opt: bytes) -> bytes:
    return encode_error(f"ERR Unrecognized option '{opt.decode(errors='replace')}'")


def wrong_args(name: str) -> bytes:
    return encode_error(f"ERR wrong number of arguments for '{name}' command")


def unknown_command(argv: list[bytes]) -> bytes:
    # As Redis 7 (commandCheckExistence): the name cut at 128 bytes, then each argument quoted
    # and followed by a space, while the arguments so far are under 128 bytes, the last one cut
    # to fit.
    name = argv[0][:128].decode(errors="replace")
    args = b""
    for a in argv[1:]:
        if len(args) >= 128:
            break
        args += b"'%b' " % a[: 128 - len(args)]
    return encode_error(f"ERR unknown command '{name}', with args beginning with: "
                        f"{args.decode(errors='replace')}")


def unknown_subcommand(name: str, sub: bytes) -> bytes:
    return encode_error(
        f"ERR unknown subcommand '{sub[:128].decode(errors='replace')}'. "
        f"Try {name.upper()} HELP.")


def not_supported(name: str, reason: str = "") -> bytes:
    label = name.replace("|", " ").upper()
    suffix = f" ({reason})" if reason else ""
    return encode_error(f"ERR command '{label}' is not supported by the proxy{suffix}")


def blocked_limit(addr: str, limit: int) -> bytes:
    return encode_error(
        f"ERR too many blocked clients on backend {addr}: all {limit} dedicated connections "
        "are in use (backend.max_dedicated)")


def subcommand_syntax(container: str, sub: bytes) -> bytes:
    return encode_error(
        f"ERR unknown subcommand or wrong number of arguments for "
        f"'{sub[:128].decode(errors='replace')}'. Try {container.upper()} HELP.")


def backend_error(addr: str, what: str = "unavailable") -> bytes:
    return encode_error(f"ERR backend {addr} {what}")


def tryagain(slot: int, why: str) -> bytes:
    # TRYAGAIN is what Redis Cluster answers mid-migration; cluster-aware clients retry it.
    return encode_error(f"TRYAGAIN slot {slot} is being migrated: {why}")


def merge_failed(e: Exception) -> bytes:
    return encode_error(f"ERR proxy could not merge replies: {e}")


def group_error(gid: int, raw: bytes) -> bytes:
    """A backend error reply of one group, tagged with the group (broadcast merges)."""
    return encode_error(f"ERR group {gid}: {raw[1:-2].decode(errors='replace')}")


def pubsub_context(name: str) -> bytes:
    """A RESP2 client in subscribed mode ran another command (Redis's wording)."""
    return encode_error(
        f"ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / "
        "RESET are allowed in this context")


def pubsub_too_many_subs(limit: int) -> bytes:
    return encode_error(
        f"ERR max number of subscriptions per client reached ({limit}, "
        "pubsub.max_subscriptions)")


def pubsub_too_many_conns(addr: str, limit: int) -> bytes:
    return encode_error(
        f"ERR max number of pub/sub connections to backend {addr} reached ({limit}, "
        "pubsub.max_backend_connections)")


# Transactions: the texts of Redis's multi.c.
QUEUED = b"+QUEUED\r\n"
MULTI_NESTED = encode_error("ERR MULTI calls can not be nested")
EXEC_WITHOUT_MULTI = encode_error("ERR EXEC without MULTI")
DISCARD_WITHOUT_MULTI = encode_error("ERR DISCARD without MULTI")
WATCH_IN_MULTI = encode_error("ERR WATCH inside MULTI is not allowed")
EXECABORT = encode_error("EXECABORT Transaction discarded because of previous errors.")
# EXEC's reply when a WATCHed key changed: the null array (RESP2) / null (RESP3).
EXEC_NIL = {2: b"*-1\r\n", 3: b"_\r\n"}


def not_in_mode(name: str, mode: str) -> bytes:
    label = name.replace("|", " ").upper()
    return encode_error(f"ERR command '{label}' is not supported by the proxy in {mode} mode")


def not_in_multi(name: str) -> bytes:
    label = name.replace("|", " ").upper()
    return encode_error(f"ERR command '{label}' is not supported by the proxy inside MULTI")


def queue_limit(count: int, size: int) -> bytes:
    return encode_error(
        f"ERR transaction queue limit reached ({count} commands or {size} bytes, "
        "limits.max_queued / limits.max_queued_bytes)")


def lease_limit(addr: str, n: int) -> bytes:
    return encode_error(
        f"ERR proxy has {n} dedicated connections to backend {addr} in use "
        "(backend.max_leased); try again later")


# Keyspace-wide commands (SCAN KEYS FLUSH* CONFIG FUNCTION).
INVALID_CURSOR = encode_error("ERR invalid cursor")


def reply_too_big(name: str, size: int, limit: int) -> bytes:
    return encode_error(
        f"ERR {name} reply would be {size} bytes, over the client output limit of {limit} "
        "(limits.client_output_buffer): use SCAN")


def refused_in_transit(name: str, nslots: int) -> bytes:
    return encode_error(
        f"ERR {name} refused while a slot migration runs ({nslots} slots in transit): "
        "retry when it is over")


def config_set_denied(param: str) -> bytes:
    return encode_error(
        f"ERR CONFIG SET '{param}' is never allowed through the proxy (files, secrets, "
        "replication and network settings are configured on each server)")


def config_set_not_allowed(param: str) -> bytes:
    return encode_error(
        f"ERR CONFIG SET '{param}' is not allowed by the proxy (add it to config.set_allowed)")


def servers_failed(what: str, failures: list[str], total: int) -> bytes:
    return encode_error(
        f"ERR {what} failed on {len(failures)} of {total} servers: " + "; ".join(failures))


def groups_disagree(what: str, gids: list[int]) -> bytes:
    return encode_error(
        f"ERR {what} differs between groups ({', '.join(map(str, gids))} differ from the "
        "first): make them uniform with FUNCTION DUMP/RESTORE or LOAD REPLACE")
