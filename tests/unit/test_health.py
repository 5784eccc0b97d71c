"""/healthz: Kafka and Elasticsearch reachability from the probe job, and what makes the service unhealthy."""

from __future__ import annotations

from ingest.health import ConnectivityProbe
from ingest.service import Service
from siem.config import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _down() -> None:
    raise TimeoutError("Failed to get offsets by times in 5000 ms")


def _up() -> None:
    return None


def _refused() -> None:
    raise ConnectionError("Connection refused")


def test_probe_records_each_service_with_the_reason_it_is_unreachable():
    clock = Clock()
    probe = ConnectivityProbe(_down, _refused, clock)
    assert probe.kafka.ok is None and probe.elasticsearch.ok is None  # not checked yet
    probe.check()
    assert probe.kafka.ok is False and "TimeoutError: Failed to get offsets" in (probe.kafka.error or "")
    assert probe.elasticsearch.ok is False and probe.elasticsearch.error == "ConnectionError: Connection refused"
    clock.now += 2.5
    assert probe.kafka.report(clock.now) == {
        "reachable": False,
        "error": "TimeoutError: Failed to get offsets by times in 5000 ms",
        "checked_s_ago": 2.5,
    }


def test_healthz_is_unhealthy_while_either_service_is_unreachable():
    kafka = {"up": True}
    probe = ConnectivityProbe(lambda: _up() if kafka["up"] else _down(), _up)
    service = Service(Settings(), [], client=None, probe=probe)  # type: ignore[arg-type]
    assert service.health_report()["healthy"] is True, "not checked yet is not a failure"
    probe.check()
    report = service.health_report()
    assert report["healthy"] is True and report["kafka"]["reachable"] is True
    assert report["elasticsearch"]["reachable"] is True
    kafka["up"] = False
    probe.check()
    report = service.health_report()
    assert report["healthy"] is False and report["kafka"]["reachable"] is False
    kafka["up"] = True
    probe.check()
    assert service.health_report()["healthy"] is True
