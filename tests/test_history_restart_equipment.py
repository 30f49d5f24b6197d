"""A quarter the daemon stopped in, closed after the restart by a swapped meter's first
reading, still carries the equipment id of the meter whose readings it holds (found by
tests/test_history_e2e.py: it was published with `equipment_id: null`, and the history
filed it under a metering point without an equipment id)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from history_synth import SynthMeter, Truth, run_meter

from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.energy.view import EnergyView
from p1daemon.views.history.recorder import HistoryRecorder
from p1daemon.views.history.rows import MeterState, QuarterRow

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def first_run(meter: SynthMeter) -> EnergyView:
    view = EnergyView("house", "primary", None, SiteSettings())
    for reading in run_meter(meter, START, START + timedelta(minutes=35), Truth()):
        view.feed(reading)
    return view


def swapped(meter: SynthMeter) -> SynthMeter:
    meter.equipment_id = "E0099"
    meter.regs = {"i1": 10, "i2": 20, "e1": 0, "e2": 0}
    return meter


def test_resumed_quarter_closed_by_a_new_meter_keeps_the_old_equipment_id() -> None:
    meter = SynthMeter("house")
    old = first_run(meter)
    last, opening = old.last_sample(), old.opening_sample()
    assert last is not None and last.equipment_id == "E0001"
    for saved_opening in (opening, None):
        view = EnergyView("house", "primary", None, SiteSettings())
        assert view.resume(last, opening=saved_opening)
        later = START + timedelta(hours=2)
        out = view.feed(swapped(SynthMeter("house")).reading(later))
        # Without the saved opening nothing is booked to it, and it is not published.
        assert len(out.quarters) == (0 if saved_opening is None else 1)
        for doc in out.quarters:
            assert doc.start == START + timedelta(minutes=30)
            assert doc.equipment_id == "E0001"


def test_restored_day_quarter_closed_by_a_new_meter_keeps_the_old_equipment_id() -> None:
    meter = SynthMeter("house")
    old = first_run(meter)
    day, opening = old.current_day(), old.quarter_opening()
    assert day is not None
    view = EnergyView("house", "primary", None, SiteSettings())
    assert view.restore(day, opening=opening)
    out = view.feed(swapped(SynthMeter("house")).reading(START + timedelta(hours=2)))
    (doc,) = out.quarters
    assert doc.equipment_id == "E0001"


def test_history_files_that_quarter_under_the_old_meter() -> None:
    meter = SynthMeter("house")
    old = first_run(meter)
    last, opening = old.last_sample(), old.opening_sample()
    assert last is not None
    recorder = HistoryRecorder(SiteSettings(), [MeterSpec("house", "primary", None)])
    recorder.resume({"house": MeterState("house", last, opening)})
    rows = recorder.feed(swapped(SynthMeter("house")).reading(START + timedelta(hours=2)))
    quarters = [r for r in rows if isinstance(r, QuarterRow) and r.status != "gap"]
    assert [q.point.equipment_id for q in quarters] == ["E0001"]
    gaps = [r for r in rows if isinstance(r, QuarterRow) and r.status == "gap"]
    assert {q.point.equipment_id for q in gaps} <= {"E0001"}
