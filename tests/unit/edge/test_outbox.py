from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from contracts.acks import AckOutcome, IngestAck
from contracts.events import ViolationEvent
from edge.outbox import Outbox
from tests.unit.edge.conftest import T0, cleared_event

TOPIC = "civicwatch/v1/site-a/gw-1/cam-1/violation"


def test_pending_events_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path)
    event = cleared_event()
    outbox.add(TOPIC, event)
    outbox.close()

    reopened = Outbox(path)
    assert reopened.pending_count() == 1
    [message] = reopened.due(resend_after_seconds=10, now=T0)
    assert message.message_id == event.message_id
    assert message.topic == TOPIC
    assert ViolationEvent.model_validate_json(message.payload) == event
    reopened.close()


def test_sent_messages_are_due_again_only_after_resend_after(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    event = cleared_event()
    outbox.add(TOPIC, event)
    outbox.mark_sent(event.message_id, T0)
    assert outbox.due(10, T0 + timedelta(seconds=5)) == []
    [again] = outbox.due(10, T0 + timedelta(seconds=10))
    assert again.attempts == 1
    outbox.close()


def test_settle_delivers_duplicates_and_dead_letters_rejections(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    stored, duplicate, rejected = cleared_event(), cleared_event(), cleared_event()
    for event in (stored, duplicate, rejected):
        outbox.add(TOPIC, event)

    assert outbox.settle(IngestAck(message_id=stored.message_id, outcome=AckOutcome.STORED))
    assert outbox.settle(IngestAck(message_id=duplicate.message_id, outcome=AckOutcome.DUPLICATE))
    assert outbox.settle(
        IngestAck(message_id=rejected.message_id, outcome=AckOutcome.REJECTED, reason="bad zone")
    )
    assert not outbox.settle(IngestAck(message_id=stored.message_id, outcome=AckOutcome.STORED))

    assert outbox.pending_count() == 0
    assert outbox.due(0, T0 + timedelta(days=1)) == [], "a dead letter is never resent"
    assert outbox.rejected() == [(rejected.message_id, "bad zone")]
    outbox.close()


def test_sequence_numbers_keep_rising_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path)
    assert [outbox.next_sequence("cam-1") for _ in range(3)] == [0, 1, 2]
    assert outbox.next_sequence("cam-2") == 0
    outbox.close()
    reopened = Outbox(path)
    assert reopened.next_sequence("cam-1") == 3
    reopened.close()
