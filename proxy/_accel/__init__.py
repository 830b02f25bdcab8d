"""Which implementation of the request/reply hot path this process runs: compiled or Python.

`_speedups` (C, against the CPython API; built by `pip install -e .`, see setup.py) holds
compiled twins of the hot-path pieces; the pure-Python originals stay the reference and the
fallback, and the same tests run over both:

=============================  ============================================  ==================
piece                          Python twin                                   compiled
=============================  ============================================  ==================
request framing (RESP, inline) protocol.request.PyRequestParser / Hiredis..  RequestParser
single-key fast path           ClientConnection._dispatch_chunk's loop       fast_run
slot (CRC16 + {hash tag})      slotcore.keyslot.key_slot                     key_slot
MSET/MGET/DEL split            fanout.split.plan_split                       split_plan
backend reply framing          slotcore.resp.ReplyReader                     ReplyReader
in-order release of replies    client.reply.ReplySlot, BackendConn's loop    ReplySlot, deliver
per-command call counts        a dict in observe.meter.Meter.raw_calls       CallCounts
latency sample + its record    client.timed.TimedSlot, observe.meter.record  TimedSlot
client read callback           ClientConnection.data_received (+ _serve)     client_data_received
client write (one per loop)    ClientConnection.flush (+ _after_write)       client_flush
backend write (one per loop)   BackendConn.flush                             backend_flush
backend read callback          BackendConn.data_received                     backend_data_received
=============================  ============================================  ==================

The last four are method descriptors that `CompiledClientConnection` and `CompiledBackendConn`
(the classes `new_client` and `new_backend_conn` make while the compiled hot path is selected)
put in place of the Python methods, so the event loop and the Flusher call C with no Python
frame; they serve the common case and call the Python methods for every other one.

The compiled pieces read and write attributes of the Python objects they work on (a
connection's fifo and out, the samplers' countdowns) by slot offset, as the interpreter's own
specialised attribute access does: each access in the C source has its own inline cache (the
type last seen there and its version tag), filled from a (type, name) table; anything that is
not a plain slot takes the generic attribute lookup. That is why the objects on the hot path
(connections, ClientState, ProxyStats, Services, Router, CommandTable) have __slots__.

`select(use_accelerator)` is called (through `client.connection.select_hot_path`, which also
picks the ReplySlot class of `client.reply`) by the composition root, `proxy.app.build_services`,
before any connection exists; each module then takes `speedups` (the compiled module, or None
for the Python twins) when it builds its objects (a client or backend connection) or, on the
rarer paths, when it runs (split). Tests call `select` to run the same cases over both.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from types import ModuleType

log = logging.getLogger("slotproxy")

#: The compiled module if it is built (importable), else None.
built: ModuleType | None
try:
    from . import _speedups as built
except ImportError as e:  # not built (no compiler at install time) or a stale build
    built = None
    IMPORT_ERROR = str(e)
else:
    IMPORT_ERROR = ""

COMPILED_AVAILABLE: bool = built is not None

#: The compiled module while the compiled hot path is selected, else None (the Python twins).
#: The default, before any select(): compiled when built.
speedups: ModuleType | None = built

__all__ = ["COMPILED_AVAILABLE", "IMPORT_ERROR", "built", "counter_classes", "for_hot_path",
           "name", "select", "speedups"]


def counter_classes(make: Callable[[type, str], type], name: str, base: str,
                    fields: tuple[str, ...]) -> tuple[type, type]:
    """A class made twice by `make(base class, class name)`: over a base whose counters
    `fields` are plain slots (what the Python hot path reads and writes fastest), and as
    "Compiled<name>" over the compiled base `base`, whose counters are C fields the compiled
    callbacks add to in place (an int attribute is a new object on every add). The same class
    twice when the extension is not built. The class sets the counters in __post_init__."""
    plain = make(type(base, (), {"__slots__": fields}), name)
    if built is None:
        return plain, plain
    return plain, make(getattr(built, base), "Compiled" + name)


def for_hot_path(plain: type, compiled: type) -> type:
    """Of a pair from counter_classes, the one for objects made now (after select())."""
    return compiled if speedups is not None else plain


def name() -> str:
    """"compiled" or "python": INFO's hot_path field and the start-up log."""
    return "compiled" if speedups is not None else "python"


def select(use_accelerator: bool = True, *, quiet: bool = False) -> str:
    """Select the compiled hot path (if wanted and built) or the Python one; its name.

    SLOTPROXY_ACCELERATOR=0 in the environment forces the Python one (whatever the config
    says): to run a whole test suite or a fleet on the fallback.
    """
    global speedups
    if os.environ.get("SLOTPROXY_ACCELERATOR", "1").strip() in ("0", "false", "no", "off"):
        use_accelerator = False
    speedups = built if use_accelerator else None
    if use_accelerator and built is None and not quiet:
        log.warning("compiled hot path not available (%s): using the pure-Python one",
                    IMPORT_ERROR)
    if not quiet:
        log.info("hot path: %s", name())
    return name()
