"""CLUSTER subcommands the proxy answers: KEYSLOT (the slot rule is the proxy's own)."""

from __future__ import annotations

from slotcore.keyslot import key_slot
from slotcore.resp import encode_int

from ..client.context import Client
from ..errors import not_supported


def cluster(c: Client, argv: list[bytes]) -> None:
    sub = argv[1].lower() if len(argv) > 1 else b""
    if sub == b"keyslot" and len(argv) == 3:
        c.reply(encode_int(key_slot(argv[2], c.services.router.nslots)))
    else:
        c.reply(not_supported("cluster|" + sub.decode(errors="replace")))


HANDLERS = {"cluster": cluster}
