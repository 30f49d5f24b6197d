"""The energy tracker on the two-meter demo: which topics get what, in what order."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import OWN_FIXTURES

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading, Role
from p1daemon.reading.model import Reading
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import EnergyTracker, MeterSpec, Outgoing

SPECS = [
    MeterSpec(
        "house", "primary", "871687400000000001", export_limit_kw=3.0, export_limit_hold_s=10
    ),
    MeterSpec("carport", "secondary", "871687400000000002"),
]


def demo(name: str, role: Role) -> list[MeterReading]:
    events = ReadingStream(TelegramDecoder()).feed(
        (OWN_FIXTURES / "demo" / f"{name}.txt").read_bytes()
    )
    out = []
    for event in events:
        assert isinstance(event, Reading) and event.timestamp is not None
        out.append(
            MeterReading.from_reading(
                event, meter=name, role=role, ean=None, received_at=event.timestamp
            )
        )
    return out


def interleaved() -> list[MeterReading]:
    both = demo("house", "primary") + demo("carport", "secondary")
    return sorted(both, key=lambda r: (r.received_at, r.meter))


def replay(tracker: EnergyTracker) -> list[Outgoing]:
    out: list[Outgoing] = []
    for reading in interleaved():
        out.extend(tracker.on_reading(reading, now=reading.received_at))
    return out


def docs(messages: list[Outgoing], topic: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if m.topic == topic]


def test_demo_site_topics() -> None:
    messages = replay(EnergyTracker(SiteSettings(), SPECS, "p1"))
    topics = {m.topic for m in messages}
    assert topics == {
        "p1/house/quarter",
        "p1/house/day",
        "p1/carport/quarter",
        "p1/carport/day",
        "p1/house/alert/export_limit",
        "p1/site/connection",
    }
    # 12:29:00-12:30:59: the 12:15 quarter closes at 12:30:00 on both meters.
    for meter in ("house", "carport"):
        quarters = docs(messages, f"p1/{meter}/quarter")
        assert [q["start"] for q in quarters] == ["2024-06-21T12:15:00+02:00"]
        assert quarters[0]["start_missing"] is True and quarters[0]["complete"] is False

    connections = docs(messages, "p1/site/connection")
    # At least one every 10 s of meter time over two minutes, plus one per closed quarter.
    assert len(connections) >= 12
    after_close = [c for c in connections if c["connection"]["quarter"] is not None]
    assert after_close, "once both meters closed 12:15 the connection has it"
    house_q = docs(messages, "p1/house/quarter")[0]
    carport_q = docs(messages, "p1/carport/quarter")[0]
    quarter = after_close[0]["connection"]["quarter"]
    assert quarter["import_kwh"] == pytest.approx(
        house_q["import"]["total_kwh"] + carport_q["import"]["total_kwh"]
    )
    assert quarter["export_kwh"] == pytest.approx(
        house_q["export"]["total_kwh"] + carport_q["export"]["total_kwh"]
    )
    last = connections[-1]
    assert last["warnings"] == [] and last["complete"] is True
    assert {p["meter"] for p in last["points"]} == {"house", "carport"}

    alerts = docs(messages, "p1/house/alert/export_limit")
    assert alerts[0]["active"] is True and alerts[-1]["active"] is False


def test_silence_shows_as_stale() -> None:
    tracker = EnergyTracker(SiteSettings(stale_after_s=60), SPECS, "p1")
    replay(tracker)
    later = datetime.fromisoformat("2024-06-21T12:35:00+02:00")
    doc = json.loads(tracker.connection(later).payload)
    assert {w["code"] for w in doc["warnings"]} == {"stale"}
    assert doc["connection"]["power"]["net_kw"] is None


def test_restore_through_bytes_and_guards() -> None:
    first = EnergyTracker(SiteSettings(), SPECS, "p1")
    messages = replay(first)
    day = [m for m in messages if m.topic == "p1/house/day"][-1]
    second = EnergyTracker(SiteSettings(), SPECS, "p1")
    assert second.restore("house", day.payload)
    assert not second.restore("house", day.payload)  # only once, before readings
    assert not second.restore("carport", day.payload)  # another meter's document
    assert not second.restore("nobody", day.payload)
    assert not EnergyTracker(SiteSettings(), SPECS, "p1").restore("house", b"not json")


def test_initial_alert_documents_and_unknown_meters() -> None:
    tracker = EnergyTracker(SiteSettings(), SPECS, "p1")
    initial = tracker.initial()
    assert [m.topic for m in initial] == ["p1/house/alert/export_limit"]
    assert json.loads(initial[0].payload)["active"] is False
    stranger = demo("carport", "secondary")[0].model_copy(update={"meter": "shed"})
    assert tracker.on_reading(stranger, now=stranger.received_at) == []


def test_a_meter_called_site_is_refused() -> None:
    with pytest.raises(ValueError):
        EnergyTracker(SiteSettings(), [MeterSpec("site", "primary")], "p1")


def test_records_are_durable_and_the_connection_is_state() -> None:
    """Quarters, days and alerts are records (the MQTT layer sends them through its
    outbox); the connection document is state, refreshed and newest-wins."""
    tracker = EnergyTracker(SiteSettings(), SPECS, "p1")
    messages = replay(tracker) + tracker.initial()
    assert {m.durable for m in messages if m.topic == "p1/site/connection"} == {False}
    assert {m.durable for m in messages if m.topic != "p1/site/connection"} == {True}


def test_connection_due_only_after_the_interval() -> None:
    tracker = EnergyTracker(SiteSettings(), SPECS, "p1", connection_interval_s=10)
    start = datetime.fromisoformat("2024-06-21T12:00:00+02:00")
    assert tracker.connection_due(start) is not None
    assert tracker.connection_due(start + timedelta(seconds=9.9)) is None
    assert tracker.connection_due(start + timedelta(seconds=10)) is not None
    reading = demo("house", "primary")[0]
    tracker.on_reading(reading, now=start + timedelta(seconds=25))  # a reading refreshes it
    assert tracker.connection_due(start + timedelta(seconds=30)) is None


def test_running_days_run_to_the_last_reading() -> None:
    tracker = EnergyTracker(SiteSettings(), SPECS, "p1")
    assert tracker.running_days() == {}
    messages = replay(tracker)
    running = {name: json.loads(doc) for name, doc in tracker.running_days().items()}
    assert set(running) == {"house", "carport"}
    published = docs(messages, "p1/house/day")[-1]  # as of 12:30:00, the last closed quarter
    assert published["last_reading"]["at"] == "2024-06-21T12:30:00+02:00"
    assert running["house"]["last_reading"]["at"] == "2024-06-21T12:30:59+02:00"
    # What a restart continues from: restore takes it like a published document.
    again = EnergyTracker(SiteSettings(), SPECS, "p1")
    assert again.restore("house", tracker.running_days()["house"])
