"""The service runs with its own thread switch interval and gives the process its own back when it stops."""

from __future__ import annotations

import sys
from typing import Any, cast

import pytest
from pydantic import ValidationError

from ingest.service import Service
from ingest.thread_switching import SwitchInterval
from siem.config import PipelineSettings, Settings


def test_the_interval_is_set_once_and_the_previous_one_restored():
    before = sys.getswitchinterval()
    switching = SwitchInterval(1.0)
    switching.apply()
    switching.apply()  # a second apply must not save 1 ms as "the previous one"
    assert sys.getswitchinterval() == pytest.approx(0.001)
    switching.restore()
    assert sys.getswitchinterval() == pytest.approx(before)


def test_the_service_applies_the_configured_interval_while_it_runs():
    before = sys.getswitchinterval()
    settings = Settings(pipeline=PipelineSettings(metrics_port=0, switch_interval_ms=2.5))
    service = Service(settings=settings, runners=[], client=cast(Any, None))
    service.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(0.0025)
    finally:
        service.stop(timeout_s=5)
    assert sys.getswitchinterval() == pytest.approx(before)


@pytest.mark.parametrize("milliseconds", [0.0, 0.05, 500.0])
def test_an_interval_outside_the_sane_range_is_refused_with_the_field_named(milliseconds):
    with pytest.raises(ValidationError, match="switch_interval_ms"):
        PipelineSettings(switch_interval_ms=milliseconds)
