"""Key → slot: CRC16-XMODEM of the hashed part of the key, with Redis Cluster's hash-tag rule.

`binascii.crc_hqx(data, 0)` *is* CRC16-XMODEM (poly 0x1021, init 0, no reflection), in C.
Both supported slot counts (16384 and 1024) are powers of two, so `mod` is a mask, and since
1024 divides 16384 the 1024-slot map is an exact coarsening of Redis Cluster's map.
"""

from __future__ import annotations

from binascii import crc_hqx

SLOT_COUNTS = (16384, 1024)
DEFAULT_SLOTS = 16384


def hash_tag(key: bytes) -> bytes:
    """The part of `key` that is hashed: the first non-empty `{...}` tag, else the whole key."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        # An empty tag ("{}") means "hash the whole key", as Redis Cluster does (Codis differs).
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes, nslots: int = DEFAULT_SLOTS) -> int:
    """Slot of `key` for a power-of-two slot count."""
    if 0x7B in key:  # "{" (int: memchr, no buffer protocol)
        key = hash_tag(key)
    return crc_hqx(key, 0) & (nslots - 1)


def crc16(data: bytes) -> int:
    return crc_hqx(data, 0)
