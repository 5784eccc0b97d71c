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


def benchmark_records(
    n: int,
    tag: str,
    now_s: float,
    records: list[dict[str, Any]] | None = None,
    alerting: list[dict[str, Any]] | None = None,
    alert_every: int = 0,
) -> list[bytes]:
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


class AlertPoller:
    """Realtime multi-GET of the alerts still awaited; records (time found − produce time) for each found."""

    def __init__(self, es: Any, grace_s: float) -> None:
        self._es = es
        self._grace_s = grace_s
        self.pending: dict[str, tuple[float, str]] = {}  # alert id -> (produce wall time, alerts index)
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        self.producing_done = threading.Event()

    def expect(self, alert_doc_id: str, produced_at: float, index: str) -> None:
        with self.lock:
            self.pending[alert_doc_id] = (produced_at, index)

    def run(self) -> None:
        grace_deadline: float | None = None
        while True:
            with self.lock:
                batch = list(self.pending.items())[:1000]
            if self.producing_done.is_set():
                grace_deadline = grace_deadline or time.time() + self._grace_s
                if not batch or time.time() > grace_deadline:
                    return
            if batch:
                self._check(batch)
            time.sleep(0.05)

    def _check(self, batch: list[tuple[str, tuple[float, str]]]) -> None:
        docs = [{"_index": index, "_id": aid} for aid, (_, index) in batch]
        try:
            response = self._es.mget(docs=docs, source=False, realtime=True)
        except Exception:  # noqa: BLE001 - transient (or the index is not created yet); next round
            return
        seen = time.time()
        with self.lock:
            for doc in response["docs"]:
                entry = self.pending.pop(doc["_id"], None) if doc.get("found") else None
                if entry is not None:
                    self.latencies.append(seen - entry[0])


def latency_child(config: dict[str, Any], result_queue: Any) -> None:
    """Produce at a fixed rate; poll ES (realtime GET) for the alert of every trigger record; report latencies.

    Puts {latencies, produced, triggers, missing, achieved_rate} on ``result_queue``.
    """
    import sys

    sys.path.insert(0, str(ROOT))
    from elasticsearch import Elasticsearch
    from kafka import KafkaProducer

    from correlation.detection.alerts import alert_id

    rate = float(config["rate"])
    every = int(config["trigger_every"])
    templates = [orjson.dumps(r) for r in config["records"]]
    producer = KafkaProducer(**config["kafka_options"], acks="all", linger_ms=5)
    poller = AlertPoller(Elasticsearch(**config["es_options"]), float(config["grace_s"]))
    thread = threading.Thread(target=poller.run, name="alert-poller")
    thread.start()
    total = int(rate * float(config["seconds"]))
    t0 = time.monotonic()
    for i in range(total):
        ahead = t0 + i / rate - time.monotonic()
        if ahead > 0.002:
            time.sleep(ahead)
        now = time.time()
        trigger = i % every == every - 1
        rec = dict(TRIGGER_TEMPLATE) if trigger else orjson.loads(templates[i % len(templates)])
        event_id = f"lat-{config['tag']}-{i:08d}-{time.time_ns()}"  # the produce wall time travels in the id
        rec["eventID"] = event_id
        rec["requestID"] = f"latreq-{config['tag']}-{i:08d}"
        rec["eventTime"] = utc_seconds(now)
        if trigger:
            poller.expect(
                alert_id(ADMIN_POLICY_RULE_ID, event_id), now, f"{config['index_prefix']}-alerts-{utc_day(now)}"
            )
        producer.send(config["topic"], value=orjson.dumps(rec))
    achieved = total / (time.monotonic() - t0)
    producer.flush(timeout=30)
    producer.close()
    poller.producing_done.set()
    thread.join()
    with poller.lock:
        missing = len(poller.pending)
    result_queue.put(
        {
            "latencies": poller.latencies,
            "produced": total,
            "triggers": total // every,
            "missing": missing,
            "achieved_rate": achieved,
        }
    )


def new_tag() -> str:
    return uuid.uuid4().hex[:8]
