"""The capacity tariff watch against hand-computed values (see fixtures/generate.py,
`capacity_month_end`, for the load profile: the quarter 23:45-00:00 takes 840 Wh)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from p1daemon.daemon.processor import Document
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading
from p1daemon.views.capacity.alert import CapacityAlarm
from p1daemon.views.capacity.compute import CapacityWatch
from p1daemon.views.capacity.processor import CapacityProcessor, CapacitySpec

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "fixtures"
ZONE = ZoneInfo("Europe/Brussels")


def readings(path: Path, *, offset_s: float = 0.0) -> list[MeterReading]:
    stream = ReadingStream(TelegramDecoder())
    data = path.read_bytes()
    parsed = [r for r in [*stream.feed(data), *stream.flush()] if isinstance(r, Reading)]
    out = []
    for r in parsed:
        assert r.timestamp is not None
        received = r.timestamp - timedelta(seconds=offset_s)
        out.append(
            MeterReading.from_reading(
                r, meter="house", role="primary", ean=None, received_at=received
            )
        )
    return out


def stream() -> list[MeterReading]:
    return readings(ROOT / "fixtures" / "be" / "capacity_month_end.txt")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def states(items: list[MeterReading]) -> dict[str, dict]:
    watch = CapacityWatch("house", None, ZONE)
    out = {}
    for r in items:
        update = watch.feed(r)
        assert update is not None
        out[update.state.at.strftime("%H:%M:%S")] = update.state.model_dump(mode="json")
    return out


def test_the_fixture_is_what_the_tests_assume() -> None:
    items = stream()
    assert len(items) == 103
    assert items[0].timestamp == at("2026-11-30T23:44:00+01:00")
    assert items[-1].timestamp == at("2026-12-01T00:01:00+01:00")


def test_projection_average_and_meter_comparison_in_the_running_quarter() -> None:
    s = states(stream())
    q = s["23:50:00"]["quarter"]
    assert q["start"] == "2026-11-30T23:45:00+01:00" and q["complete"] is True
    assert q["elapsed_s"] == 300.0
    assert q["energy_kwh"] == pytest.approx(0.150)
    assert q["power_kw"] == 7.2
    assert q["computed_average_kw"] == pytest.approx(1.8)
    assert (q["average_kw"], q["average_source"], q["meter_average_kw"]) == (1.8, "meter", 1.8)
    assert q["difference_kw"] == pytest.approx(0.0)
    # (0.150 kWh + 7.2 kW x 600 s) / 15 min
    assert q["projected_kw"] == pytest.approx(5.4)
    # at 23:55 the power drops to 1.08 kW: (0.750 + 1.08 x 300 s / 3600) / 0.25 h
    assert s["23:55:00"]["quarter"]["projected_kw"] == pytest.approx(3.36)
    assert s["23:55:00"]["quarter"]["energy_kwh"] == pytest.approx(0.750)
    # the first quarter was not seen from its start
    assert s["23:44:30"]["quarter"]["complete"] is False


def test_month_peak_and_rolling_average_with_floor_across_the_month_end() -> None:
    s = states(stream())
    nov = s["23:59:50"]
    assert nov["month"]["start"] == "2026-11-01T00:00:00+01:00"
    assert (nov["month"]["peak_kw"], nov["month"]["peak_source"]) == (3.1, "meter")
    assert nov["month"]["peak_at"] == "2026-11-12T18:15:00+01:00"
    assert nov["month"]["computed_peak_kw"] is None  # no complete quarter closed yet
    # Nov 3.1 + Dec 3.9, Feb 5.1, Mar-Jun 4 x 2.5 (floor), Jul 2.7, Aug 2.5, Sep 3.0,
    # Oct 3.6 (Jan: placeholder, not known) = 33.9 over 11 months
    rolling = nov["rolling"]
    assert rolling["average_kw"] == pytest.approx(33.9 / 11, abs=1e-4)
    assert rolling["months"] == 11 and rolling["floor_kw"] == 2.5
    assert rolling["history_source"] == "meter"
    # the 12 closed months: + Nov 2025 (4.2), without this month: 35.0 over 11
    assert rolling["previous_average_kw"] == pytest.approx(35.0 / 11, abs=1e-4)
    assert rolling["change_kw"] == pytest.approx(-0.1, abs=1e-4)

    dec = s["00:00:10"]
    assert dec["month"]["start"] == "2026-12-01T00:00:00+01:00"
    assert dec["month"]["peak_kw"] == 0.0
    # the daemon's own view of November's last quarter, beside the meter's 98.1.0
    assert dec["quarter"]["start"] == "2026-12-01T00:00:00+01:00"
    # Dec at the floor 2.5 + Feb..Oct as above (27.9 - 3.9 + ...) + Nov 3.36: 32.76 / 11
    assert dec["rolling"]["average_kw"] == pytest.approx(32.76 / 11, abs=1e-4)
    assert dec["rolling"]["months"] == 11
    # 13 entries: Nov 2025 is outside both windows now
    assert dec["rolling"]["previous_average_kw"] == pytest.approx(34.16 / 11, abs=1e-4)


def test_computed_mode_closes_the_quarter_from_the_registers() -> None:
    """`capacity = "on"` on a meter without capacity data: everything computed."""
    items = [r.model_copy(update={"capacity": None}) for r in stream()]
    s = states(items)
    dec = s["00:00:10"]
    assert dec["month"]["peak_source"] == "computed" and dec["month"]["peak_kw"] is None
    assert dec["rolling"]["history_source"] == "computed"
    # computed November: the one complete quarter, 0.840 kWh / 0.25 h; Dec at the floor
    assert dec["rolling"]["average_kw"] == pytest.approx((3.36 + 2.5) / 2, abs=1e-4)
    assert dec["quarter"]["average_source"] == "computed"


def run_alarm(alarm: CapacityAlarm, items: list[MeterReading]) -> list[dict]:
    watch = CapacityWatch("house", None, ZONE)
    out = []
    for r in items:
        update = watch.feed(r)
        assert update is not None
        out += [a.model_dump(mode="json") for a in alarm.feed(update.state, update.closed)]
    return out


def test_warning_raised_before_the_quarter_ends_and_cleared_by_its_end() -> None:
    alerts = run_alarm(CapacityAlarm("house", hold_s=30), stream())
    assert [(a["active"], a["cleared_by"]) for a in alerts] == [
        (True, None),
        (False, "quarter_end"),
    ]
    raised, cleared = alerts
    assert raised["above_since"] == "2026-11-30T23:50:00+01:00"
    assert raised["raised_at"] == "2026-11-30T23:50:30+01:00"
    assert (raised["reference"], raised["threshold_kw"]) == ("month_peak", 3.1)
    assert raised["projected_kw"] == pytest.approx(5.4)
    assert cleared["cleared_at"] == "2026-12-01T00:00:00+01:00"
    assert cleared["quarter_average_kw"] == pytest.approx(3.36)
    assert cleared["quarter_start"] == "2026-11-30T23:45:00+01:00"


def test_warning_cleared_when_the_projection_drops_below_a_target_for_the_hold_time() -> None:
    alerts = run_alarm(CapacityAlarm("house", hold_s=30, target_kw=4.0), stream())
    assert [(a["active"], a["cleared_by"]) for a in alerts] == [(True, None), (False, "dropped")]
    assert alerts[0]["reference"] == "target"
    assert alerts[1]["cleared_at"] == "2026-11-30T23:55:30+01:00"


def test_margin_keeps_the_warning_quiet() -> None:
    assert run_alarm(CapacityAlarm("house", hold_s=30, margin_kw=2.5), stream()) == []


def test_a_short_spike_does_not_raise_within_the_hold_time() -> None:
    # the projection stays above 4.0 kW from 23:50:00 to 23:54:50 (290 s), then 3.36 kW
    assert run_alarm(CapacityAlarm("house", hold_s=291, target_kw=4.0), stream()) == []
    assert len(run_alarm(CapacityAlarm("house", hold_s=290, target_kw=4.0), stream())) == 2


def test_processor_documents_state_and_records() -> None:
    processor = CapacityProcessor([CapacitySpec("house", None)], ZONE, "p1")
    assert processor.start() == []
    docs: list[Document] = []
    items = stream()
    for r in items:
        docs += processor.on_reading(r, r.received_at)
    states_ = [d for d in docs if d.topic == "p1/house/capacity"]
    alerts = [d for d in docs if d.topic == "p1/house/alert/capacity"]
    assert len(states_) == len(items) and not any(d.record for d in states_)
    assert all(d.record for d in alerts)
    shown = [json.loads(d.payload) for d in alerts]
    assert [a["active"] for a in shown] == [False, True, False]  # announce, raise, clear
    assert shown[1]["raises_average_by_kw"] == pytest.approx((5.4 - 3.1) / 11, abs=1e-4)


def test_tick_ends_a_warning_whose_quarter_ended_without_readings() -> None:
    processor = CapacityProcessor([CapacitySpec("house", None)], ZONE, "p1")
    items = [r for r in stream() if r.timestamp and r.timestamp < at("2026-11-30T23:52:00+01:00")]
    for r in items:
        processor.on_reading(r, r.received_at)
    assert processor.on_tick(at("2026-11-30T23:59:00+01:00")) == []
    (doc,) = processor.on_tick(at("2026-12-01T00:01:01+01:00"))
    alert = json.loads(doc.payload)
    assert (alert["active"], alert["cleared_by"]) == (False, "quarter_end")
    assert alert["quarter_average_kw"] is None
    assert processor.on_tick(at("2026-12-01T00:02:00+01:00")) == []


def test_auto_mode_ignores_a_meter_without_capacity_data_and_off_ignores_all() -> None:
    items = stream()[:5]
    dutch = [r.model_copy(update={"capacity": None}) for r in items]
    auto = CapacityProcessor([CapacitySpec("house", None, "auto")], ZONE, "p1")
    assert all(auto.on_reading(r, r.received_at) == () for r in dutch)
    off = CapacityProcessor([CapacitySpec("house", None, "off")], ZONE, "p1")
    assert all(off.on_reading(r, r.received_at) == () for r in items)
    on = CapacityProcessor([CapacitySpec("house", None, "on")], ZONE, "p1")
    (announce,) = on.start()
    assert json.loads(announce.payload)["active"] is False and announce.record


def test_clock_drift_between_meter_and_pi_is_shown() -> None:
    items = readings(ROOT / "fixtures" / "be" / "capacity_month_end.txt", offset_s=20.0)
    watch = CapacityWatch("house", None, ZONE)
    update = watch.feed(items[0])
    assert update is not None and update.state.clock_offset_s == 20.0


def shared(name: str) -> MeterReading:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"shared capture {path} not present")
    (reading,) = readings(path)
    return reading


def test_shared_fluvius_capture_with_a_placeholder_and_four_entries() -> None:
    watch = CapacityWatch("house", None, ZONE)
    update = watch.feed(shared("ndokter-dsmr_parser/be_fluvius_v171_alt_gas_water.txt"))
    assert update is not None
    state = update.state
    assert (state.month.peak_kw, state.month.peak_source) == (3.064, "meter")
    # Nov 3.064, Oct 4.927, Sep 4.229, Aug 1.862 -> 2.5; Jul is a placeholder
    assert state.rolling.average_kw == pytest.approx(14.72 / 4, abs=1e-4)
    assert state.rolling.months == 4
    assert state.rolling.previous_average_kw == pytest.approx(11.656 / 3, abs=1e-4)
    assert state.quarter.meter_average_kw == 0.052


def test_shared_emucs_spec_example_three_entries() -> None:
    watch = CapacityWatch("house", None, ZONE)
    update = watch.feed(shared("ndokter-dsmr_parser/be_fluvius_v171_gas_water.txt"))
    assert update is not None
    assert update.state.rolling.average_kw == pytest.approx(
        (2.589 + 3.695 + 5.98 + 4.318) / 4, abs=1e-4
    )
    assert update.state.rolling.months == 4


def test_first_reading_mid_quarter_assumes_its_power_for_the_unseen_start() -> None:
    watch = CapacityWatch("house", None, ZONE)
    update = watch.feed(stream()[0])  # 23:44:00, 1.08 kW, the quarter began at 23:30
    assert update is not None
    q = update.state.quarter
    assert q.complete is False
    assert q.computed_average_kw == pytest.approx(1.08)
    assert q.projected_kw == pytest.approx(1.08)
    assert q.energy_kwh == pytest.approx(1.08 * 840 / 3600, abs=1e-6)


def test_reload_keeps_unchanged_meters_and_withdraws_a_changed_meters_warning() -> None:
    from p1daemon.config import Config

    def config(**meter: object) -> Config:
        return Config.model_validate(
            {
                "site": {"timezone": "Europe/Brussels"},
                "meters": [{"name": "house", "source": "socket://127.0.0.1:9001", **meter}],
            }
        )

    processor = CapacityProcessor.from_config(config())
    items = [r for r in stream() if r.timestamp and r.timestamp < at("2026-11-30T23:51:00+01:00")]
    for r in items:
        processor.on_reading(r, r.received_at)
    assert processor.on_reload(config()) == []  # unchanged: the raised warning stays
    (doc,) = processor.on_reload(config(capacity_target_kw=6.0))
    alert = json.loads(doc.payload)
    assert (alert["active"], alert["cleared_by"]) == (False, "reconfigured")
    assert alert["cleared_at"] == "2026-11-30T23:50:50+01:00"
    # the changed meter starts over: its next reading announces it inactive first
    first = processor.on_reading(items[-1], items[-1].received_at)
    assert json.loads(first[0].payload)["active"] is False
