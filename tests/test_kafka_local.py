"""The local broker's helpers that need no broker."""

import uuid


def test_kafka_cluster_ids_never_start_with_a_dash(monkeypatch):
    from streamrec.kafka_local import new_cluster_id

    # 0xf8.. encodes to a leading "-" in base64url: the first draw must be rejected
    draws = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(draws))
    cid = new_cluster_id()
    assert cid == "AQEBAQEBAQEBAQEBAQEBAQ" and len(cid) == 22
