"""Which Kafka offsets are safe to commit.

A record is *done* once every document made from it is acknowledged by Elasticsearch, sent to the DLQ, or
deliberately dropped. Records finish out of order (a DLQ entry can be acknowledged before an earlier record's
bulk item), so per partition we keep the offsets still pending and commit only up to the lowest of them: the
committed position never passes a record that is not done, whatever order acknowledgements arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class _PartitionState:
    pending: dict[int, int] = field(default_factory=dict)  # offset -> documents not yet acknowledged
    next_offset: int | None = None  # one past the highest offset seen
    committed: int | None = None  # last position handed to Kafka


class OffsetTracker:
    """Tracks pending documents per (topic, partition) and yields safe commit positions."""

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], _PartitionState] = {}

    def track(self, topic: str, partition: int, offset: int, documents: int) -> None:
        """Register a polled record that produced ``documents`` outstanding documents (0 = already done)."""
        state = self._partitions.get((topic, partition))
        if state is None:  # not setdefault: that would build a state object for every record
            state = self._partitions[(topic, partition)] = _PartitionState()
        if documents > 0:
            state.pending[offset] = state.pending.get(offset, 0) + documents
        if state.next_offset is None or offset + 1 > state.next_offset:
            state.next_offset = offset + 1

    def acknowledge(self, topic: str, partition: int, offset: int, documents: int = 1) -> None:
        """Mark ``documents`` of a record as delivered (indexed, DLQ'd or dropped)."""
        state = self._partitions.get((topic, partition))
        if state is None or offset not in state.pending:
            return  # partition was revoked meanwhile; its new owner re-reads the record
        remaining = state.pending[offset] - documents
        if remaining > 0:
            state.pending[offset] = remaining
        else:
            del state.pending[offset]

    def commit_position(self, topic: str, partition: int) -> int | None:
        """Offset to commit (the next record to read), or None if nothing new is safe to commit."""
        state = self._partitions.get((topic, partition))
        if state is None or state.next_offset is None:
            return None
        position = min(state.pending) if state.pending else state.next_offset
        if state.committed is not None and position <= state.committed:
            return None
        return position

    def commit_positions(self) -> dict[tuple[str, int], int]:
        """Every partition's new safe commit position."""
        positions: dict[tuple[str, int], int] = {}
        for key in self._partitions:
            position = self.commit_position(*key)
            if position is not None:
                positions[key] = position
        return positions

    def mark_committed(self, topic: str, partition: int, position: int) -> None:
        state = self._partitions.get((topic, partition))
        if state is not None:
            state.committed = position

    def pending_documents(self) -> int:
        return sum(sum(state.pending.values()) for state in self._partitions.values())

    def forget(self, topic: str, partition: int) -> None:
        """Drop a revoked partition: its records will be re-read (and re-indexed idempotently) by its new owner."""
        self._partitions.pop((topic, partition), None)

    def partitions(self) -> list[tuple[str, int]]:
        return list(self._partitions)
