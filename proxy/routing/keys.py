"""The one slot of a command's keys (Redis Cluster's rule: every key of a command in one slot)."""

from __future__ import annotations

from collections.abc import Sequence

from slotcore.keyslot import key_slot


def common_slot(keys: Sequence[bytes], nslots: int) -> int | None:
    """The slot every one of `keys` (at least one) hashes to, or None if they span slots (the
    caller answers -CROSSSLOT)."""
    slot = key_slot(keys[0], nslots)
    for k in keys[1:]:
        if key_slot(k, nslots) != slot:
            return None
    return slot
