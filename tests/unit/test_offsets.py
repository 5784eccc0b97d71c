from ingest.offsets import OffsetTracker


def test_commit_position_stops_at_lowest_pending_offset():
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.track("t", 0, offset, 1)
    tracker.acknowledge("t", 0, 0)
    tracker.acknowledge("t", 0, 3)  # out of order: 1 and 2 still pending
    assert tracker.commit_position("t", 0) == 1
    tracker.acknowledge("t", 0, 1)
    tracker.acknowledge("t", 0, 2)
    assert tracker.commit_position("t", 0) == 4
    tracker.acknowledge("t", 0, 4)
    assert tracker.commit_position("t", 0) == 5


def test_record_with_several_documents_is_done_only_when_all_are_acknowledged():
    tracker = OffsetTracker()
    tracker.track("t", 0, 7, 3)
    tracker.acknowledge("t", 0, 7, 2)
    assert tracker.commit_position("t", 0) == 7
    tracker.acknowledge("t", 0, 7)
    assert tracker.commit_position("t", 0) == 8


def test_records_without_documents_are_committable_and_positions_do_not_repeat():
    tracker = OffsetTracker()
    tracker.track("t", 1, 0, 0)  # e.g. a digest file: deliberately dropped, counted
    assert tracker.commit_positions() == {("t", 1): 1}
    tracker.mark_committed("t", 1, 1)
    assert tracker.commit_positions() == {}


def test_forgotten_partition_ignores_late_acknowledgements():
    tracker = OffsetTracker()
    tracker.track("t", 0, 0, 1)
    tracker.forget("t", 0)
    tracker.acknowledge("t", 0, 0)
    assert tracker.commit_positions() == {}
    assert tracker.pending_documents() == 0
