"""Every merge of sub-replies into one client reply (pure: bytes in, bytes out).

One error rule for all of them: the first error part wins; when the parts come from a
broadcast to every group, it is tagged with its group ("ERR group 2: ..."), since the client
cannot otherwise tell which backend said it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from slotcore.resp import OK, encode_bulk, encode_int, parse_reply, split_array

from ..errors import group_error

Merge = Callable[[list[bytes]], bytes]


def first_error(parts: Sequence[bytes], gids: Sequence[int] | None = None) -> bytes | None:
    for i, p in enumerate(parts):
        if p[:1] == b"-":
            return group_error(gids[i], p) if gids is not None else p
    return None


# ---------------------------------------------------------------------- split commands
def merge_sum(parts: list[bytes]) -> bytes:
    """DEL UNLINK EXISTS TOUCH: the counts add up."""
    return first_error(parts) or encode_int(sum(int(p[1:-2]) for p in parts))


def merge_ok(parts: list[bytes]) -> bytes:
    """MSET: OK when every part is."""
    return first_error(parts) or OK


def merge_mget(positions: list[list[int]], nkeys: int) -> Merge:
    """MGET: part i holds the values of the keys at `positions[i]`, back in request order."""
    def merge(parts: list[bytes]) -> bytes:
        err = first_error(parts)
        if err is not None:
            return err
        items: list[bytes] = [b""] * nkeys
        for idxs, part in zip(positions, parts, strict=True):
            elems = split_array(part)
            if len(elems) != len(idxs):
                raise ValueError("sub-reply has the wrong number of elements")
            for i, e in zip(idxs, elems, strict=True):
                items[i] = e
        return b"*%d\r\n" % nkeys + b"".join(items)

    return merge


# ---------------------------------------------------------------------- broadcasts
def merge_dbsize(parts: list[bytes], gids: list[int]) -> bytes:
    return first_error(parts, gids) or encode_int(sum(int(p[1:-2]) for p in parts))


def merge_all_ok(parts: list[bytes], gids: list[int]) -> bytes:
    return first_error(parts, gids) or OK


def merge_same(parts: list[bytes], gids: list[int]) -> bytes:
    """Every group must succeed; the first reply stands for all (SCRIPT LOAD's sha1)."""
    return first_error(parts, gids) or parts[0]


def merge_and_arrays(parts: list[bytes], gids: list[int]) -> bytes:
    """SCRIPT EXISTS: a script exists for the proxy only if every group has it."""
    err = first_error(parts, gids)
    if err is not None:
        return err
    arrays = [split_array(p) for p in parts]
    flags = [all(a[i] == b":1\r\n" for a in arrays) for i in range(len(arrays[0]))]
    return b"*%d\r\n" % len(flags) + b"".join(b":1\r\n" if f else b":0\r\n" for f in flags)


# ---------------------------------------------------------------------- INFO
_SUMMED_SECTIONS = {"memory", "stats", "persistence", "cpu", "keyspace", "clients"}


def parse_info(text: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    cur: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("# "):
            cur = out.setdefault(line[2:].strip(), {})
        elif cur is not None and ":" in line:
            k, _, v = line.partition(":")
            cur[k] = v
    return out


def _num(v: str) -> int | float | None:
    try:
        return int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return None


def _human(n: float) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{int(n)}B"


def _merge_keyspace(old: str | None, new: str) -> str:
    def parse(v: str) -> dict[str, int]:
        return {a: int(b) for a, _, b in (f.partition("=") for f in v.split(",")) if b.isdigit()}

    n = parse(new)
    if old is None:
        return ",".join(f"{k}={v}" for k, v in n.items())
    o = parse(old)
    keys = o.get("keys", 0) + n.get("keys", 0)
    expires = o.get("expires", 0) + n.get("expires", 0)
    # avg_ttl is weighted by each side's keys with a TTL.
    ttl = 0
    if expires:
        ttl = (o.get("avg_ttl", 0) * o.get("expires", 0) +
               n.get("avg_ttl", 0) * n.get("expires", 0)) // expires
    return f"keys={keys},expires={expires},avg_ttl={ttl}"


def _merge_kv_stats(old: str | None, new: str) -> str:
    """commandstats/errorstats/latency-free "a=1,b=2.5" fields: numbers summed, usec_per_call
    recomputed from the sums."""
    if old is None:
        return new
    o = dict(f.partition("=")[::2] for f in old.split(","))
    n = dict(f.partition("=")[::2] for f in new.split(","))
    for k, v in n.items():
        a, b = _num(o.get(k, "0")), _num(v)
        if k == "usec_per_call" or a is None or b is None:
            o.setdefault(k, v)
        else:
            o[k] = str(a + b)
    if "usec_per_call" in o and (calls := _num(o.get("calls", ""))) and \
            (usec := _num(o.get("usec", ""))) is not None:
        o["usec_per_call"] = f"{usec / calls:.2f}"
    return ",".join(f"{k}={v}" for k, v in o.items())


_KV_SECTIONS = {"commandstats", "errorstats"}


def merge_info(parts: list[bytes], sections: list[str], proxy_section: str, clients: int,
               port: int, commands: int, blocked: int = 0,
               overrides: dict[str, dict[str, str]] | None = None) -> bytes:
    """The backends' INFO replies as one: counters summed, the rest from the first group;
    figures about connections describe the proxy, not the backends' view of it."""
    infos: list[dict[str, dict[str, str]]] = []
    for p in parts:
        if p[:1] == b"$":
            value = parse_reply(p)
            if isinstance(value, bytes):
                infos.append(parse_info(value.decode(errors="replace")))
    merged: dict[str, dict[str, str]] = {}
    order: list[str] = []
    for info in infos:
        for sec, fields in info.items():
            if sec not in merged:
                merged[sec] = {}
                order.append(sec)
            target = merged[sec]
            summed = sec.lower() in _SUMMED_SECTIONS
            for k, v in fields.items():
                if sec.lower() == "keyspace":
                    target[k] = _merge_keyspace(target.get(k), v)
                elif sec.lower() in _KV_SECTIONS:
                    target[k] = _merge_kv_stats(target.get(k), v)
                elif summed and k in target and (a := _num(target[k])) is not None \
                        and (b := _num(v)) is not None and not k.endswith(("_ratio", "_perc")):
                    total = a + b
                    target[k] = str(round(total, 2) if isinstance(total, float) else total)
                elif k not in target:
                    target[k] = v
    # Human-readable memory figures are recomputed from the summed byte counts.
    mem = merged.get("Memory", {})
    for k in list(mem):
        if k.endswith("_human") and (raw := _num(mem.get(k[: -len("_human")], ""))) is not None:
            mem[k] = _human(raw)
    if "Clients" in merged:
        merged["Clients"]["connected_clients"] = str(clients)
        # The backends count the proxy's dedicated connections; the clients are the proxy's.
        merged["Clients"]["blocked_clients"] = str(blocked)
    for sec, fields in (overrides or {}).items():
        if sec in merged:
            merged[sec].update(fields)
    if "Replication" in merged:
        # The proxy answers as a master whatever its backends are (their replicas serve reads
        # through it, they are not the proxy's replicas): no backend's role or replica list.
        merged["Replication"] = proxy_replication(merged["Replication"])
    if "Server" in merged:
        srv = merged["Server"]
        srv["redis_mode"] = "proxy"
        srv["process_id"] = str(os.getpid())
        srv["tcp_port"] = str(port)
    if "Stats" in merged:
        merged["Stats"]["total_commands_processed_proxy"] = str(commands)
    text = ""
    if not sections or any(x in ("all", "everything", "default", "proxy") for x in sections):
        text = proxy_section + "\r\n"
    for sec in order:
        text += f"# {sec}\r\n" + "".join(f"{k}:{v}\r\n" for k, v in merged[sec].items()) + "\r\n"
    return encode_bulk(text.rstrip("\r\n").encode() + b"\r\n")


_REPLICATION_KEPT = ("master_failover_state", "master_replid", "master_replid2",
                     "master_repl_offset", "second_repl_offset", "repl_backlog_active",
                     "repl_backlog_size", "repl_backlog_first_byte_offset",
                     "repl_backlog_histlen")


def proxy_replication(fields: dict[str, str]) -> dict[str, str]:
    """INFO replication as the proxy states it: a master with no replicas of its own (the
    same as CLUSTER NODES/SLOTS/SHARDS, where every proxy is a master and backend replicas are
    never nodes); the first group's replication ids and offsets are kept as they are."""
    out = {"role": "master", "connected_slaves": "0"}
    out.update((k, fields[k]) for k in _REPLICATION_KEPT if k in fields)
    return out
