"""IngestAckBatch on the wire: round trips, the split ingest makes, and hostile payloads."""

from __future__ import annotations

import json
import random
import uuid

import pytest
from pydantic import ValidationError

from contracts.acks import (
    ACK_BATCH_MAX_BYTES,
    ACK_BATCH_MAX_ITEMS,
    AckOutcome,
    AckTooLargeError,
    IngestAck,
    IngestAckBatch,
    batch_wire,
    parse_acks,
)
from contracts.status import GatewayState, GatewayStatus


def _acks(count: int, outcome: AckOutcome = AckOutcome.STORED, reason: str = "") -> list[IngestAck]:
    return [
        IngestAck(message_id=uuid.uuid4(), outcome=outcome, reason=reason) for _ in range(count)
    ]


# Message ids in the parameters below are drawn, not uuid4: pytest-xdist's workers must collect
# the same test ids, and a test id shows the start of its payload.
_DRAW = random.Random(20261205)


def _drawn_id() -> str:
    return str(uuid.UUID(int=_DRAW.getrandbits(128), version=4))


def _item() -> dict[str, str]:
    return {"message_id": _drawn_id(), "outcome": "stored", "reason": ""}


def test_batch_round_trip_keeps_items_and_order() -> None:
    acks = _acks(3) + _acks(1, AckOutcome.REJECTED, "schema 2.0 unsupported") + _acks(1)
    wire = IngestAckBatch(acks=acks).to_wire()
    assert json.loads(wire) == {"acks": [json.loads(ack.to_wire()) for ack in acks]}
    assert parse_acks(wire) == acks
    assert IngestAckBatch.model_validate_json(wire).acks == acks


def test_a_single_ack_still_parses() -> None:
    ack = IngestAck(message_id=uuid.uuid4(), outcome=AckOutcome.DUPLICATE)
    assert parse_acks(ack.to_wire()) == [ack]


def test_batch_wire_is_the_models_json() -> None:
    acks = _acks(7)
    assert batch_wire(acks) == [IngestAckBatch(acks=acks).to_wire()]
    assert batch_wire([]) == []


def test_batch_wire_splits_past_the_item_cap_in_order() -> None:
    acks = _acks(ACK_BATCH_MAX_ITEMS * 2 + 5)
    payloads = batch_wire(acks)
    assert [len(parse_acks(p)) for p in payloads] == [ACK_BATCH_MAX_ITEMS, ACK_BATCH_MAX_ITEMS, 5]
    assert [ack for p in payloads for ack in parse_acks(p)] == acks


def test_batch_wire_splits_past_the_byte_cap() -> None:
    # Control characters escape to six bytes each: the largest ack an ingest can make.
    acks = _acks(300, AckOutcome.REJECTED, "\x01" * 500)
    payloads = batch_wire(acks)
    assert len(payloads) > 1
    assert all(len(p) <= ACK_BATCH_MAX_BYTES for p in payloads)
    assert [ack for p in payloads for ack in parse_acks(p)] == acks


def test_too_many_items_are_refused() -> None:
    payload = json.dumps({"acks": [_item() for _ in range(ACK_BATCH_MAX_ITEMS + 1)]}).encode()
    assert len(payload) < ACK_BATCH_MAX_BYTES  # the item cap, not the size, refuses it
    with pytest.raises(ValidationError, match="at most 1000"):
        parse_acks(payload)


def test_an_oversize_payload_is_refused_before_parsing() -> None:
    payload = json.dumps({"acks": [_item()], "pad": "x" * ACK_BATCH_MAX_BYTES}).encode()
    with pytest.raises(AckTooLargeError):
        parse_acks(payload)


@pytest.mark.parametrize(
    "payload",
    [
        {"acks": []},
        {"acks": None},
        {"acks": "junk"},
        {"acks": {"message_id": _drawn_id(), "outcome": "stored"}},
        {"acks": [1, 2, 3]},
        {"acks": [_item(), {"message_id": "not-a-uuid", "outcome": "stored"}]},
        {"acks": [_item(), {"message_id": _drawn_id(), "outcome": "maybe"}]},
        {"acks": [_item(), {"message_id": _drawn_id(), "outcome": "stored", "reason": 7}]},
        {"acks": [_item(), {"message_id": _drawn_id()}]},
        {"acks": [_item(), [_item()]]},
        {"acks": [_item(), {"acks": [_item()]}]},
        {"acks": [{**_item(), "reason": "x" * 501}]},
        # a junk batch never falls back to the single ack it also pretends to be
        {"acks": "junk", "message_id": _drawn_id(), "outcome": "stored"},
        [_item()],
        "stored",
        7,
        None,
    ],
    ids=lambda value: json.dumps(value)[:40],
)
def test_wrong_types_and_junk_items_refuse_the_whole_message(payload: object) -> None:
    with pytest.raises(ValidationError):
        parse_acks(json.dumps(payload).encode())


@pytest.mark.parametrize(
    "payload",
    [
        b'{"acks":[' + b"[" * 5_000 + b"]" * 5_000 + b"]}",
        b'{"acks":[{"message_id":' + b'{"a":' * 3_000 + b"1" + b"}" * 3_000 + b"}]}",
        b'{"acks":[' + b"{" * 100,
        b"\x00\xff",
        b"",
    ],
    ids=["deep arrays", "deep objects", "truncated", "binary", "empty"],
)
def test_nested_and_broken_junk_is_refused(payload: bytes) -> None:
    with pytest.raises(ValidationError):
        parse_acks(payload)


def test_gateway_status_says_whether_it_reads_batches() -> None:
    older = {"site_id": "site-a", "gateway_id": "gw-1", "state": "online"}
    assert GatewayStatus.model_validate(older).ack_batch is False  # an older gateway: singles
    newer = GatewayStatus(
        site_id="site-a", gateway_id="gw-1", state=GatewayState.ONLINE, ack_batch=True
    )
    assert json.loads(newer.to_wire())["ack_batch"] is True
