"""Deterministic document ids (design.md: re-delivery after a crash overwrites instead of duplicating)."""

from __future__ import annotations

from hashlib import blake2b

# Hash state after ``topic\0partition\0``, per (topic, partition): a partition's records share it, and copying it
# costs less than hashing the prefix again. Bounded (cleared when full), like the other per-value caches.
_PARTITION_HASH: dict[tuple[str, int], blake2b] = {}
_PARTITION_HASH_MAX = 4096


def _partition_hash(topic: str, partition: int) -> blake2b:
    key = (topic, partition)
    state = _PARTITION_HASH.get(key)
    if state is None:
        if len(_PARTITION_HASH) >= _PARTITION_HASH_MAX:
            _PARTITION_HASH.clear()
        state = _PARTITION_HASH[key] = blake2b(f"{topic}\x00{partition}\x00".encode(), digest_size=16)
    return state


def coordinate_id(topic: str, partition: int, offset: int, index: int) -> str:
    """Id for events without a natural id: hash of where the event sits in Kafka, i.e. of
    ``f"{topic}\\0{partition}\\0{offset}\\0{index}"`` (hashed in two parts: same digest)."""
    hasher = _partition_hash(topic, partition).copy()
    hasher.update(f"{offset}\x00{index}".encode())
    return hasher.hexdigest()


def k8s_audit_id(audit_id: str, stage: str | None) -> str:
    """One audit request produces one event per stage, so the stage is part of the id."""
    return f"{audit_id}-{stage}" if stage else audit_id
