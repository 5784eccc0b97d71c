"""Prometheus metrics. Every stage counts the same things (received / emitted / dropped / failed), labelled by
stage and source, and failures by a fixed set of error types so label cardinality stays bounded."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("siem_records_received_total", "Kafka records received", ["stage", "source"])
EMITTED = Counter(
    "siem_documents_emitted_total", "Documents acknowledged by Elasticsearch", ["stage", "source", "kind"]
)
DROPPED = Counter("siem_records_dropped_total", "Records or events deliberately dropped", ["stage", "source", "reason"])
# error_type: the DLQ error types (parse and shape failures), mapping_error (Elasticsearch refused a document),
# es_unavailable (a bulk request failed), es_retryable_item (an item answered 429/5xx, retried), produce_pending /
# produce_error, commit_error, incident_retry / incident_error, job_error. Whole-request failures have source "all".
FAILED = Counter("siem_failures_total", "Failures by error type", ["stage", "source", "error_type"])
DLQ = Counter("siem_dlq_total", "Entries sent to the dead-letter queue", ["stage", "source", "error_type"])
ALERTS = Counter("siem_alerts_total", "Alerts produced per rule", ["rule_id"])
INCIDENTS = Counter("siem_incidents_total", "Incidents opened or updated", ["action"])
CONSUMER_LAG = Gauge("siem_consumer_lag", "Records behind the partition end", ["stage", "topic", "partition"])
BULK_LATENCY = Histogram(
    "siem_bulk_latency_seconds",
    "Latency of Elasticsearch bulk requests",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BULK_PENDING = Gauge("siem_bulk_pending_documents", "Documents buffered for Elasticsearch", ["stage"])
CORRELATION_STATE = Gauge("siem_correlation_state_keys", "Active correlation group keys")
SINK_BLOCKED = Gauge(
    "siem_sink_blocked", "1 while Elasticsearch writes are failing and partitions are paused", ["stage"]
)
