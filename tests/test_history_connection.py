"""Connection shares from the history: a series connection with a primary and two
secondaries (a charge point importing, a solar installation exporting). The truth is
this file's own model of the flows; the report's own shares and its list of quarter-hours
with a negative own share for the primary point must match it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from history_synth import AMS, SynthMeter, Truth, run_meter

from p1daemon.views.energy.clock import day_bounds
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.history.aggregate import connection_summary, point_groups, summarise
from p1daemon.views.history.recorder import HistoryRecorder
from p1daemon.views.history.store import HistoryStore

SITE = SiteSettings(topology="series")
FIRST, LAST = date(2026, 6, 1), date(2026, 6, 3)


def house(index: int) -> int:
    return 60 + (index * 29) % 150  # Wh per quarter


def charger(index: int) -> int:
    return 500 if 72 <= index % 96 < 84 else 0  # 2 kW, evenings


def solar(index: int, local: datetime) -> int:
    return (index * 41) % 400 if 9 <= local.hour < 17 else 0


def flows(index: int, local: datetime) -> tuple[int, int]:
    """The primary meter sees the net of everything behind it, per quarter."""
    net = house(index) + charger(index) - solar(index, local)
    return (net, 0) if net >= 0 else (0, -net)


def test_series_connection_own_shares_and_negative_quarters(tmp_path: Path) -> None:
    start, end = day_bounds(FIRST, AMS)[0], day_bounds(LAST, AMS)[1]
    meters = [
        SynthMeter("grid", "primary", "871234567890000011", "P0001", lambda i, at: flows(i, at)),
        SynthMeter("ev", "secondary", "871234567890000028", "C0001", lambda i, at: (charger(i), 0)),
        SynthMeter(
            "pv", "secondary", "871234567890000035", "S0001", lambda i, at: (0, solar(i, at))
        ),
    ]
    specs = [MeterSpec(m.name, m.role, m.ean) for m in meters]
    recorder = HistoryRecorder(SITE, specs)
    store = HistoryStore.open(tmp_path / "history.db")
    truths = {m.name: Truth() for m in meters}
    streams = [run_meter(m, start, end, truths[m.name]) for m in meters]
    rows = []
    for triple in zip(*streams, strict=True):  # the meters' readings interleaved
        for reading in triple:
            rows.extend(recorder.feed(reading))
    store.write(rows)

    groups = point_groups(store)
    summaries = [summarise(store, groups[m.name], start, end, "day", AMS) for m in meters]
    conn = connection_summary(summaries, "series", Decimal("0.01"))
    assert conn is not None

    # The truth, from the model: per quarter and for the period.
    expected_negative = []
    own_import = own_export = 0
    quarters = sorted(truths["grid"].quarters)
    for index, at in enumerate(quarters):
        local = at.astimezone(AMS)
        imp, exp = flows(index, local)
        share_import = imp - charger(index)
        share_export = exp - solar(index, local)
        own_import += share_import
        own_export += share_export
        if share_import < -10 or share_export < -10:
            expected_negative.append((at, share_import, share_export))
    assert len(quarters) == 3 * 96

    def kwh(wh: int) -> Decimal:
        return Decimal(wh) / 1000

    own = conn.own["grid"]
    got_import = own[("import", "t1")] + own[("import", "t2")]
    got_export = own[("export", "t1")] + own[("export", "t2")]
    assert got_import == kwh(own_import)
    assert got_export == kwh(own_export)
    assert conn.own["ev"][("import", "t1")] + conn.own["ev"][("import", "t2")] == kwh(
        sum(charger(i) for i in range(len(quarters)))
    )
    # Every listed quarter is a truly negative one, and every negative one is listed.
    assert expected_negative, "the model must produce negative own shares"
    assert [(q.start, q.own) for q in conn.negative] == [
        (at, {("import", "total"): kwh(i), ("export", "total"): kwh(e)})
        for at, i, e in expected_negative
    ]
    assert conn.incomplete_quarters == 0
    assert start.tzinfo is UTC
