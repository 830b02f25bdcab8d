"""What the proxy says about its own requests: SLOWLOG, its CONFIG parameters
(proxy-slowlog-*), and INFO's commandstats/latencystats sections from its own figures
(proxy.observe.meter), which replace the backends' in a merged INFO.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from slotcore.resp import OK, encode, encode_array, encode_bulk, encode_error, encode_int

from ..client.context import Client
from ..config import SLOWLOG_MAX_LEN_LIMIT
from ..errors import NOT_INTEGER
from ..observe import histogram

# ---------------------------------------------------------------------- SLOWLOG
# The proxy's own log (observe.slowlog): requests slow end to end, backend included.
_SLOWLOG_HELP = [
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name (then ' group=<id>': the group the request went to, '*' for several)",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Print this help.",
]
_COUNT_RANGE = encode_error("ERR count should be greater than or equal to -1")


def slowlog_client_field(name: str, group: str) -> str:
    """The 6th field of an entry: the client name, then " group=<id>" (client names cannot
    contain spaces, so the last word is always the group). Kept in that field because
    clients (redis-py, go-redis, Jedis) read exactly six fields per entry."""
    return f"{name} group={group}" if name else f"group={group or '-'}"


def slowlog(c: Client, argv: list[bytes]) -> None:
    log = c.services.stats.meter.slowlog
    sub = argv[1].lower() if len(argv) > 1 else b""
    argc = len(argv)
    if sub == b"get" and argc in (2, 3):
        count = 10
        if argc == 3:
            try:
                count = int(argv[2])
            except ValueError:
                c.reply(NOT_INTEGER)
                return
            if count < -1:
                c.reply(_COUNT_RANGE)
                return
        entries = [
            b"*6\r\n" + encode_int(e.id) + encode_int(e.time) + encode_int(e.usec)
            + encode_array(list(e.argv)) + encode_bulk(e.addr.encode())
            + encode_bulk(slowlog_client_field(e.name, e.group).encode())
            for e in log.get(count)]
        c.reply(b"*%d\r\n" % len(entries) + b"".join(entries))
    elif sub == b"len" and argc == 2:
        c.reply(encode_int(len(log)))
    elif sub == b"reset" and argc == 2:
        log.reset()
        c.reply(OK)
    elif sub == b"help" and argc == 2:
        c.reply(b"*%d\r\n" % len(_SLOWLOG_HELP)
                + b"".join(b"+%b\r\n" % h.encode() for h in _SLOWLOG_HELP))
    else:
        c.reply(encode_error(
            f"ERR unknown subcommand or wrong number of arguments for "
            f"'{argv[1][:128].decode(errors='replace') if argc > 1 else ''}'. "
            "Try SLOWLOG HELP."))


# ---------------------------------------------------------------------- proxy CONFIG params
# The proxy's own settings under CONFIG GET/SET, named apart from the backends' (plain
# `slowlog-*` still goes to every server): name -> (lowest, highest) value.
PROXY_PARAMS: dict[str, tuple[int, int]] = {
    "proxy-slowlog-log-slower-than": (-(1 << 62), 1 << 62),
    "proxy-slowlog-max-len": (0, SLOWLOG_MAX_LEN_LIMIT),
    # 1 = time every request (exact latency and slow log, at a CPU cost; README "Metrics")
    "proxy-latency-sample-every": (1, 1 << 30),
}


def is_proxy_param(name: bytes) -> bool:
    return name.lower().startswith(b"proxy-")


def _param_values(c: Client) -> dict[str, int]:
    meter = c.services.stats.meter
    return {"proxy-slowlog-log-slower-than": meter.slowlog.slower_than,
            "proxy-slowlog-max-len": meter.slowlog.max_len,
            "proxy-latency-sample-every": meter.every}


def proxy_config_get(c: Client, patterns: list[bytes]) -> None:
    values = _param_values(c)
    found: dict[str, int] = {}
    for p in patterns:
        pat = p.decode(errors="replace").lower()
        for name, v in values.items():
            if fnmatch.fnmatchcase(name, pat):
                found[name] = v
    c.reply(encode({k.encode(): str(v).encode() for k, v in found.items()}, c.state.proto)
            if c.state.proto == 3 else
            encode_array([x for k, v in found.items() for x in (k.encode(), str(v).encode())]))


def proxy_config_set(c: Client, pairs: list[bytes]) -> None:
    """All or nothing, as Redis 7's multi-parameter CONFIG SET."""
    updates: list[tuple[str, int]] = []
    for i in range(0, len(pairs), 2):
        name = pairs[i].decode(errors="replace").lower()
        if name not in PROXY_PARAMS:
            c.reply(encode_error(f"ERR Unknown option or number of arguments for CONFIG SET - "
                                 f"'{name}'"))
            return
        try:
            value: int | None = int(pairs[i + 1])
        except ValueError:
            value = None
        low, high = PROXY_PARAMS[name]
        if value is None or not low <= value <= high:
            want = "an integer" if name.endswith("slower-than") else f"{low}..{high}"
            c.reply(encode_error(f"ERR CONFIG SET failed (possibly related to argument "
                                 f"'{name}') - argument must be {want}"))
            return
        updates.append((name, value))
    meter = c.services.stats.meter
    for name, value in updates:
        if name == "proxy-slowlog-max-len":
            meter.slowlog.set_max_len(value)
        elif name == "proxy-latency-sample-every":
            meter.set_every(value)
        else:
            meter.slowlog.slower_than = value
    c.reply(OK)


# ---------------------------------------------------------------------- INFO own sections
def commandstats_section(services: Any) -> str:
    """Redis 7's `# Commandstats`, for the proxy's view: calls and rejected_calls are exact;
    usec and failed_calls come from the timed requests (all of them unless
    latency_sample_every > 1, when usec is the timed mean times calls)."""
    meter = services.stats.meter
    lines = ["# Commandstats"]
    for row in meter.rows():
        t = row.timings
        if not (row.calls or row.rejected or t.failed):
            continue
        per_call = t.sum_ns / 1000 / t.count if t.count else 0.0
        usec = t.sum_ns // 1000 if meter.every == 1 else int(per_call * row.calls)
        lines.append(f"cmdstat_{row.name}:calls={row.calls},usec={usec},"
                     f"usec_per_call={per_call:.2f},rejected_calls={row.rejected},"
                     f"failed_calls={t.failed}")
    return "\r\n".join(lines) + "\r\n"


def latencystats_section(services: Any) -> str:
    """Redis 7's `# Latencystats` (p50, p99, p99.9 in µs), from the proxy's fixed-bucket
    histograms: bucket-approximate (interpolated inside a power-of-two bucket)."""
    lines = ["# Latencystats"]
    for row in services.stats.meter.rows():
        b = row.timings.buckets
        if not row.timings.count:
            continue
        lines.append(f"latency_percentiles_usec_{row.name}:"
                     + ",".join(f"p{q:g}={histogram.percentile(b, q):.3f}"
                                for q in (50, 99, 99.9)))
    return "\r\n".join(lines) + "\r\n"


# Sections the proxy answers from its own figures (not the backends'), by INFO's name.
OWN_SECTIONS = {"commandstats": ("Commandstats", commandstats_section),
                "latencystats": ("Latencystats", latencystats_section)}
_WITH_OWN = {"all", "everything"}  # INFO all/everything include them; default does not


def own_sections(services: Any, sections: list[str]) -> dict[str, str]:
    """The proxy's own sections a request for `sections` includes, by title."""
    want = set(sections)
    return {title: build(services) for key, (title, build) in OWN_SECTIONS.items()
            if key in want or want & _WITH_OWN}


def put_own_sections(text: str, own: dict[str, str]) -> str:
    """The merged INFO text with the backends' Commandstats/Latencystats replaced by ours."""
    blocks = [b for b in text.split("\r\n\r\n") if b.strip()]
    out, placed = [], set()
    for b in blocks:
        title = b.split("\r\n", 1)[0][2:].strip() if b.startswith("# ") else ""
        if title in own:
            out.append(own[title].rstrip("\r\n"))
            placed.add(title)
        elif title.lower() not in OWN_SECTIONS:
            out.append(b.rstrip("\r\n"))
    out += [own[t].rstrip("\r\n") for t in own if t not in placed]
    return "\r\n\r\n".join(out) + "\r\n"



HANDLERS = {"slowlog": slowlog}
