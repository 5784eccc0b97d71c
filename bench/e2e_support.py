"""Helpers of ``bench_e2e.py``: benchmark records, isolated settings, the paced latency producer, cleanup.

The latency producer runs in a child process (spawned, not forked: the parent already runs Kafka and ES client
threads) so its pacing and polling never compete with the pipeline for the parent's GIL.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
PANTHER_CLOUDTRAIL = ROOT / ".." / "shared" / "data" / "panther" / "cloudtrail_tests.jsonl"

# sigma_rules/rules/aws_cloudtrail/aws_iam_policy_attached_admin.yml: eventSource iam, eventName
# Attach{User,Group,Role}Policy, requestParameters.policyArn endswith /AdministratorAccess, no errorCode.
ADMIN_POLICY_RULE_ID = "0f6c7d1e-3a52-4f0e-9b1c-5d2e8a7b6c41"
TRIGGER_TEMPLATE: dict[str, Any] = {
    "eventVersion": "1.08",
    "userIdentity": {
        "type": "IAMUser",
        "principalId": "AIDAJ45Q7YFFAREXAMPLE",
        "arn": "arn:aws:iam::123456789012:user/alice",
        "accountId": "123456789012",
        "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
        "userName": "alice",
    },
    "eventTime": "",
    "eventSource": "iam.amazonaws.com",
    "eventName": "AttachUserPolicy",
    "awsRegion": "us-east-1",
    "sourceIPAddress": "198.51.100.7",
    "userAgent": "aws-cli/2.15.0 Python/3.11.6 Linux/6.1 botocore/2.4.5",
    "requestParameters": {"userName": "bob", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
    "responseElements": None,
    "requestID": "",
    "eventID": "",
    "readOnly": False,
    "eventType": "AwsApiCall",
    "managementEvent": True,
    "recipientAccountId": "123456789012",
    "eventCategory": "Management",
}


def utc_seconds(epoch_s: float) -> str:
    """CloudTrail's own eventTime format (``2026-11-22T10:00:00Z``)."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_day(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y.%m.%d")


def panther_cloudtrail_records() -> list[dict[str, Any]]:
    """The labelled Panther CloudTrail records that are single CloudTrail events (the stream's common shape)."""
    records: list[dict[str, Any]] = []
    for line in PANTHER_CLOUDTRAIL.read_text().splitlines():
        record = orjson.loads(line).get("log")
        if isinstance(record, dict) and "eventName" in record:
            records.append(record)
    return records


def benchmark_records(n: int, tag: str, now_s: float, records: list[dict[str, Any]] | None = None,
                      alerting: list[dict[str, Any]] | None = None, alert_every: int = 0) -> list[bytes]:
    """``n`` raw CloudTrail records cycled from ``records`` (default: the Panther set), with unique eventIDs;
    with ``alerting`` and ``alert_every``, one record in ``alert_every`` is taken from ``alerting`` instead.

    eventTime is re-stamped to the last hour, spread over it, so the events land in today's daily index the way
    a live stream does (the original 2018-2024 times would scatter them over ~100 one-shard daily indices).
    """
    templates = [orjson.dumps(r) for r in (records if records is not None else panther_cloudtrail_records())]
    firing = [orjson.dumps(r) for r in alerting or []]
    out: list[bytes] = []
    for i in range(n):
        if firing and alert_every and i % alert_every == alert_every - 1:
            rec = orjson.loads(firing[(i // alert_every) % len(firing)])
        else:
            rec = orjson.loads(templates[i % len(templates)])
        rec["eventID"] = f"bench-{tag}-{i:08d}"
        rec["requestID"] = f"req-{tag}-{i:08d}"
        rec["eventTime"] = utc_seconds(now_s - 3600 + 3600 * i / n)
        out.append(orjson.dumps(rec))
    return out


def delete_topics(bootstrap: dict[str, Any], topics: list[str], groups: list[str]) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**bootstrap)
    try:
        existing = set(admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            admin.delete_topics(doomed)
        try:
            admin.delete_consumer_groups(groups)
        except Exception:  # noqa: BLE001 - a group that never committed does not exist
            pass
    finally:
        admin.close()


# -- latency child process -----------------------------------------------------------------------------------


def latency_child(config: dict[str, Any], result_queue: Any) -> None:
    """Produce at a fixed rate; poll ES (realtime GET) for the alert of every trigger record; report latencies.

    Sends (latencies_s list, produced, triggers, missing) on ``result_queue``.
    """
    import sys

    sys.path.insert(0, str(ROOT))
    from elasticsearch import Elasticsearch
    from kafka import KafkaProducer

    from correlation.detection.alerts import alert_id

    rate = float(config["rate"])
    seconds = float(config["seconds"])
    every = int(config["trigger_every"])
    prefix = config["index_prefix"]
    tag = config["tag"]
    templates = [orjson.dumps(r) for r in config["records"]]

    es = Elasticsearch(**config["es_options"])
    producer = KafkaProducer(**config["kafka_options"], acks="all", linger_ms=5)
    pending: dict[str, tuple[float, str]] = {}  # alert id -> (produce wall time, alerts index)
    latencies: list[float] = []
    lock = threading.Lock()
    producing_done = threading.Event()

    def poll_alerts() -> None:
        grace_deadline: float | None = None
        while True:
            with lock:
                batch = list(pending.items())[:1000]
            if not batch:
                if producing_done.is_set():
                    return
                time.sleep(0.02)
                continue
            if producing_done.is_set():
                grace_deadline = grace_deadline or time.time() + float(config["grace_s"])
                if time.time() > grace_deadline:
                    return
            docs = [{"_index": index, "_id": aid} for aid, (_, index) in batch]
            try:
                response = es.mget(docs=docs, source=False, realtime=True)
            except Exception:  # noqa: BLE001 - transient; try again next round
                time.sleep(0.05)
                continue
            seen = time.time()
            with lock:
                for doc in response["docs"]:
                    if doc.get("found"):
                        entry = pending.pop(doc["_id"], None)
                        if entry is not None:
                            latencies.append(seen - entry[0])
            time.sleep(0.05)

    poller = threading.Thread(target=poll_alerts, name="alert-poller")
    poller.start()
    total = int(rate * seconds)
    t0 = time.monotonic()
    triggers = 0
    for i in range(total):
        due = t0 + i / rate
        ahead = due - time.monotonic()
        if ahead > 0.002:
            time.sleep(ahead)
        now = time.time()
        trigger = i % every == every - 1
        if trigger:
            rec = dict(TRIGGER_TEMPLATE)
            triggers += 1
        else:
            rec = orjson.loads(templates[i % len(templates)])
        event_id = f"lat-{tag}-{i:08d}-{time.time_ns()}"  # the produce wall time travels in the id
        rec["eventID"] = event_id
        rec["requestID"] = f"latreq-{tag}-{i:08d}"
        rec["eventTime"] = utc_seconds(now)
        value = orjson.dumps(rec)
        if trigger:
            with lock:
                pending[alert_id(ADMIN_POLICY_RULE_ID, event_id)] = (now, f"{prefix}-alerts-{utc_day(now)}")
        producer.send(config["topic"], value=value)
    achieved = total / (time.monotonic() - t0)
    producer.flush(timeout=30)
    producer.close()
    producing_done.set()
    poller.join()
    with lock:
        missing = len(pending)
    result_queue.put({"latencies": latencies, "produced": total, "triggers": triggers, "missing": missing,
                      "achieved_rate": achieved})


def new_tag() -> str:
    return uuid.uuid4().hex[:8]
