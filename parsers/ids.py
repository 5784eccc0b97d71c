"""Deterministic document ids (design.md: re-delivery after a crash overwrites instead of duplicating)."""

from __future__ import annotations

from hashlib import blake2b


def coordinate_id(topic: str, partition: int, offset: int, index: int) -> str:
    """Id for events without a natural id: hash of where the event sits in Kafka."""
    key = f"{topic}\x00{partition}\x00{offset}\x00{index}".encode()
    return blake2b(key, digest_size=16).hexdigest()


def k8s_audit_id(audit_id: str, stage: str | None) -> str:
    """One audit request produces one event per stage, so the stage is part of the id."""
    return f"{audit_id}-{stage}" if stage else audit_id
