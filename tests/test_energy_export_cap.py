"""The export cap alert: raised only after the hold time above the limit, cleared at once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import OWN_FIXTURES

from p1daemon.config import MeterConfig
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import EnergyDirection, Reading
from p1daemon.views.energy.export_cap import ExportLimitAlert, ExportLimitMonitor

T0 = datetime(2024, 6, 21, 12, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))


def at(seconds: float, export_kw: float | None) -> MeterReading:
    when = T0 + timedelta(seconds=seconds)
    return MeterReading(
        header="TST5\\2CAP",
        timestamp=when,
        export=EnergyDirection(power_kw=export_kw),
        meter="house",
        role="primary",
        received_at=when,
    )


def feed(
    monitor: ExportLimitMonitor, points: Sequence[tuple[float, float | None]]
) -> list[tuple[float, ExportLimitAlert]]:
    out = []
    for seconds, export_kw in points:
        alert = monitor.feed(at(seconds, export_kw))
        if alert is not None:
            out.append((seconds, alert))
    return out


def test_raised_after_the_hold_time_and_cleared_when_export_drops() -> None:
    monitor = ExportLimitMonitor("house", limit_kw=2.5, hold_s=60)
    points = [(s, 3.0 + (0.4 if s == 30 else 0.0)) for s in range(0, 100, 10)] + [(100, 2.0)]
    events = feed(monitor, points)
    assert [(s, a.active) for s, a in events] == [(60, True), (100, False)]
    raised = events[0][1]
    assert raised.above_since == T0 and raised.raised_at == T0 + timedelta(seconds=60)
    assert raised.peak_kw == pytest.approx(3.4) and raised.limit_kw == 2.5
    cleared = events[1][1]
    assert cleared.cleared_at == T0 + timedelta(seconds=100)
    assert cleared.raised_at == raised.raised_at and cleared.peak_kw == pytest.approx(3.4)
    assert not monitor.active and not monitor.state().active


def test_one_reading_at_or_below_the_limit_restarts_the_wait() -> None:
    monitor = ExportLimitMonitor("house", limit_kw=2.5, hold_s=60)
    points = (
        [(s, 3.0) for s in range(0, 60, 10)] + [(60, 2.5)] + [(s, 3.0) for s in range(70, 200, 10)]
    )
    events = feed(monitor, points)
    assert [(s, a.active) for s, a in events] == [(130, True)]  # 60 s after 70


def test_a_reading_gap_restarts_the_wait() -> None:
    monitor = ExportLimitMonitor("house", limit_kw=2.5, hold_s=60, max_gap_s=30)
    points = [(0, 3.0), (10, 3.0)] + [(s, 3.0) for s in range(100, 170, 10)]
    events = feed(monitor, points)
    assert [(s, a.active) for s, a in events] == [(160, True)]  # from 100, not from 0


def test_missing_export_power_and_old_readings_change_nothing() -> None:
    monitor = ExportLimitMonitor("house", limit_kw=2.5, hold_s=20)
    # 5 s is older than the reading before it (a clock step back): ignored, like the null.
    events = feed(monitor, [(0, 3.0), (10, 3.0), (5, 1.0), (15, None), (20, 3.0)])
    assert [(s, a.active) for s, a in events] == [(20, True)]


def test_zero_hold_alerts_on_the_first_reading_above() -> None:
    monitor = ExportLimitMonitor("house", limit_kw=2.5, hold_s=0)
    assert [(s, a.active) for s, a in feed(monitor, [(0, 2.0), (1, 2.6)])] == [(1, True)]


def test_settings() -> None:
    meter = {"name": "house", "source": "/dev/ttyUSB0"}
    assert MeterConfig.model_validate(meter).export_limit_kw is None
    with pytest.raises(ValueError):
        MeterConfig.model_validate({**meter, "export_limit_kw": 0})
    with pytest.raises(ValueError):
        MeterConfig.model_validate({**meter, "export_limit_kw": 1, "export_limit_hold_s": -1})
    with pytest.raises(ValueError):
        ExportLimitMonitor("house", limit_kw=0, hold_s=1)


def test_demo_capture() -> None:
    """House demo: ~3.2 kW export with a few cloud dips, then a washing machine."""
    events = ReadingStream(TelegramDecoder()).feed(
        (OWN_FIXTURES / "demo" / "house.txt").read_bytes()
    )
    readings = [
        MeterReading.from_reading(
            r, meter="house", role="primary", ean=None, received_at=r.timestamp or T0
        )
        for r in events
        if isinstance(r, Reading)
    ]
    limit, hold = 3.0, 10.0
    # Oracle: runs of consecutive readings above the limit; a run raises at its first
    # reading held >= 10 s and clears at the first reading after it.
    expected = []
    run_start = None
    raised = False
    for r in readings:
        assert r.timestamp is not None and r.export.power_kw is not None
        if r.export.power_kw > limit:
            run_start = run_start or r.timestamp
            if not raised and (r.timestamp - run_start).total_seconds() >= hold:
                expected.append((r.timestamp, True))
                raised = True
        else:
            if raised:
                expected.append((r.timestamp, False))
            run_start, raised = None, False
    assert len(expected) >= 2  # the capture has at least one episode

    monitor = ExportLimitMonitor("house", limit_kw=limit, hold_s=hold)
    got = [
        (a.raised_at if a.active else a.cleared_at, a.active)
        for r in readings
        if (a := monitor.feed(r))
    ]
    assert got == expected


def test_a_clock_that_starts_over_is_a_new_timeline_not_a_stall() -> None:
    """A replay looping (or a replaced meter with its own clock) goes back for good: the
    alert must work again on the new timeline, not wait for the clock to catch up."""
    monitor = ExportLimitMonitor("house", limit_kw=2.5, hold_s=20, max_gap_s=30)
    first = [(s, 3.0) for s in range(0, 40, 10)] + [(40, 1.0)]
    again = [(s, 3.0) for s in range(0, 40, 10)]  # the same two minutes once more
    events = feed(monitor, first + again)
    # Raised at 20, cleared at 40; on the new timeline 0 only proposes it, 10 confirms it
    # (a gap: the wait starts at 10), so it is raised again at 30.
    assert [(s, a.active) for s, a in events] == [(20, True), (40, False), (30, True)]


def test_one_stray_old_reading_is_not_a_new_timeline() -> None:
    monitor = ExportLimitMonitor("house", limit_kw=2.5, hold_s=30, max_gap_s=30)
    # 200 s of export; one telegram from 100 s earlier (below the limit) shows up late.
    points = [(s, 3.0) for s in range(0, 150, 10)] + [(40, 1.0)] + [(150, 3.0), (160, 3.0)]
    events = feed(monitor, points)
    assert [(s, a.active) for s, a in events] == [(30, True)]  # not cleared by the stray
