"""`p1daemon watch` without a broker: topics, the state model, the rules, the layout and
the in-place redraw, fed with documents shaped like the daemon's (the end-to-end tests
in test_watch_e2e.py feed the real daemon's)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from watch_terminal import ScreenModel

from p1daemon.watch.layout import assess_fleet, frame, plain, records
from p1daemon.watch.rules import Limits
from p1daemon.watch.screen import Screen, fit
from p1daemon.watch.state import Fleet
from p1daemon.watch.topics import PrefixError, TopicParser, checked_prefix, subscriptions

NOW = datetime(2026, 6, 21, 12, 0, 0, tzinfo=UTC)
LIMITS = Limits(stale_after_s=60, health_timeout_s=180)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def latest(meter: str, role: str, ean: str, imp: float, exp: float, at: datetime) -> dict[str, Any]:
    return {
        "meter": meter,
        "role": role,
        "ean": ean,
        "import": {"power_kw": imp, "total_kwh": 100.0},
        "export": {"power_kw": exp, "total_kwh": 50.0},
        "timestamp": iso(at),
        "received_at": iso(at),
        "meter_replaced": False,
    }


def daemon_health(at: datetime, meters: list[str], **outbox: Any) -> dict[str, Any]:
    box = {"depth": 0, "oldest_age_s": None, "dropped_full": 0, "dropped_memory": 0}
    box |= {"lost_corrupt": 0, "writable": True} | outbox
    return {"version": "0.1.0", "at": iso(at), "uptime_s": 5.0, "outbox": box, "meters": meters}


class Feeder:
    def __init__(self, prefixes: tuple[str, ...] = ("+",)) -> None:
        self.fleet = Fleet()
        self.parser = TopicParser(prefixes)

    def send(self, topic: str, payload: Any) -> None:
        parsed = self.parser.parse(topic)
        assert parsed is not None, topic
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.fleet.feed(parsed, raw, NOW)

    def healthy_site(self, prefix: str, meters: dict[str, tuple[str, str]]) -> None:
        self.send(f"{prefix}/status", b"online")
        self.send(f"{prefix}/daemon/health", daemon_health(NOW, sorted(meters)))
        for i, (name, (role, ean)) in enumerate(meters.items()):
            self.send(f"{prefix}/{name}/latest", latest(name, role, ean, 0.5 + i, 0.25, NOW))
            self.send(
                f"{prefix}/{name}/health",
                {"meter": name, "connected": True, "state": "reading", "dropped": {}},
            )

    def rows(self, now: datetime = NOW) -> Any:
        return assess_fleet(self.fleet, now, LIMITS)


def test_prefixes_are_checked_and_subscriptions_skip_readings() -> None:
    assert checked_prefix("coop/+") == "coop/+"
    for bad in ("", "p1/", "/p1", "p1/#", "p+1", "a//b"):
        with pytest.raises(PrefixError):
            checked_prefix(bad)
    filters = subscriptions(("p1", "+"))
    assert "p1/status" in filters and "+/+/latest" in filters and "p1/+/alert/+" in filters
    assert not any(f.endswith("/reading") or f.endswith("#") for f in filters)


def test_topics_name_their_site_and_document() -> None:
    parser = TopicParser(("+", "coop/+"))
    assert parser.parse("p1/house/latest") == parser.parse("p1/house/latest")
    got = parser.parse("p1/house/alert/capacity")
    assert got is not None and (got.prefix, got.kind, got.meter, got.name) == (
        "p1",
        "alert",
        "house",
        "capacity",
    )
    daemon = parser.parse("p1/daemon/health")
    assert daemon is not None and daemon.kind == "daemon" and daemon.meter is None
    site = parser.parse("coop/7/site/connection")
    assert site is not None and (site.prefix, site.kind) == ("coop/7", "connection")
    assert parser.parse("p1/site/latest") is None  # reserved names are not meters
    assert parser.parse("p1/house/reading") is None


def test_a_healthy_site_has_no_problem_and_shows_every_meter() -> None:
    feeder = Feeder()
    feeder.healthy_site(
        "p1",
        {"house": ("primary", "871685900012345674"), "car": ("secondary", "8716859000123456810")},
    )
    rows = feeder.rows()
    assert [row.problem for row in rows] == [False]
    text = "\n".join(plain(line) for line in frame(rows, NOW, LIMITS, where="b:1"))
    assert "1 site, 2 meters, 0 with problems" in text
    assert "871685900012345674" in text and "1.500" in text and "0.250" in text


def test_offline_stale_silent_and_alerts_are_problems_sorted_first() -> None:
    feeder = Feeder()
    feeder.healthy_site("a-fine", {"m": ("primary", "1")})
    feeder.healthy_site("b-offline", {"m": ("primary", "2")})
    feeder.send("b-offline/status", b"offline")
    feeder.healthy_site("c-stale", {"m": ("primary", "3")})
    old = NOW - timedelta(seconds=95)
    feeder.send("c-stale/m/latest", latest("m", "primary", "3", 1, 0, old))
    feeder.healthy_site("d-silent", {"m": ("primary", "4")})
    feeder.send("d-silent/daemon/health", daemon_health(NOW - timedelta(minutes=5), ["m"]))
    feeder.healthy_site("e-alert", {"m": ("primary", "5")})
    # A kind the daemon does not publish yet (issue 13) is shown all the same.
    feeder.send("e-alert/m/alert/capacity", {"meter": "m", "active": True, "message": "over"})
    feeder.send("e-alert/m/alert/export_limit", {"meter": "m", "active": False})
    rows = feeder.rows()
    assert [row.site.prefix for row in rows] == [
        "b-offline",
        "c-stale",
        "d-silent",
        "e-alert",
        "a-fine",
    ]
    codes = {row.site.prefix: {f.code for f in row.findings if f.problem} for row in rows}
    assert codes["b-offline"] == {"offline"}
    assert codes["c-stale"] == {"stale"}
    assert codes["d-silent"] == {"health_silent"}
    assert codes["e-alert"] == {"alert_capacity"}
    assert codes["a-fine"] == set()
    text = "\n".join(plain(line) for line in frame(rows, NOW, LIMITS, where="b:1"))
    assert "5 sites, 5 meters, 4 with problems" in text
    assert "OFFLINE" in text and "ALERT capacity: over" in text and "export_limit" not in text
    assert "95s!" in text  # the stale age is marked, not only coloured


def test_losses_backlog_notes_and_connection_warnings() -> None:
    feeder = Feeder()
    feeder.healthy_site("p1", {"house": ("primary", "1")})
    feeder.send(
        "p1/daemon/health",
        daemon_health(NOW, ["house"], depth=900, oldest_age_s=400.0, dropped_full=3),
    )
    feeder.send("p1/house/health", {"connected": True, "dropped": {"crc": 2}, "dropped_total": 2})
    feeder.send(
        "p1/house/day",
        {
            "date": "2026-06-21",
            "import": {"total_kwh": 1.5},
            "export": {"total_kwh": 0.5},
            "meter_replaced": True,
        },
    )
    feeder.send(
        "p1/site/connection",
        {
            "topology": "series",
            "connection": {"power": {"import_kw": 2.0, "export_kw": 0.0}},
            "points": [{"meter": "house", "derived": True, "power": {"import_kw": 1.0}}],
            "warnings": [
                {"code": "stale", "meter": "house", "message": "old news"},
                {"code": "series_negative_export", "meter": "house", "message": "cannot add up"},
            ],
        },
    )
    (row,) = feeder.rows()
    problems = {f.code for f in row.findings if f.problem}
    notes = {f.code for f in row.findings if not f.problem}
    assert problems == {"readings_lost", "backlog", "connection"}
    assert notes == {"dropped", "meter_replaced"}
    text = "\n".join(plain(line) for line in frame([row], NOW, LIMITS, where="b:1"))
    assert "cannot add up" in text and "old news" not in text  # `stale` is judged from latest
    assert "= house own  net " in text and "2 telegrams dropped (crc 2)" in text
    assert "p1  online  series" in text and "= connection  net -" in text


def test_garbage_is_ignored_and_an_empty_retained_payload_forgets() -> None:
    feeder = Feeder()
    feeder.healthy_site("p1", {"house": ("primary", "1"), "car": ("secondary", "2")})
    feeder.send("p1/house/latest", b"not json")
    feeder.send("p1/house/health", [1, 2])
    assert feeder.fleet.ignored == 2
    feeder.send("p1/house/day", {"import": {"total_kwh": "lots"}})  # odd fields: unknown
    assert feeder.fleet.sites["p1"].meters["house"].day is not None
    for topic in ("p1/car/latest", "p1/car/health"):
        feeder.send(topic, b"")
    assert "car" not in feeder.fleet.sites["p1"].meters
    for topic in (
        "p1/status",
        "p1/daemon/health",
        "p1/house/latest",
        "p1/house/health",
        "p1/house/day",
    ):
        feeder.send(topic, b"")
    assert feeder.fleet.sites == {}


def test_broker_text_cannot_move_the_cursor_or_overflow() -> None:
    feeder = Feeder()
    evil = "m\x1b[2J\u4e2d"
    feeder.healthy_site("p1", {evil: ("primary", "\x1b[31m" + "9" * 40)})
    lines = frame(feeder.rows(), NOW, LIMITS, where="b:1")
    for line in lines:
        text = fit(line, 40, color=False)
        assert len(text) <= 40 and "\x1b" not in text and text.isascii()


def test_records_change_only_when_the_state_does() -> None:
    feeder = Feeder()
    feeder.healthy_site("p1", {"house": ("primary", "1")})
    first = records(feeder.rows())
    assert records(feeder.rows(NOW + timedelta(seconds=5))) == first  # no ticking ages
    feeder.send("p1/house/latest", latest("house", "primary", "1", 2.0, 0.0, NOW))
    second = records(feeder.rows())
    assert [k for k in first if first[k] != second[k]] == ["meter p1/house"]
    assert "import_kw=2.000" in second["meter p1/house"]
    later = records(feeder.rows(NOW + timedelta(seconds=61)))
    assert "PROBLEM" in later["meter p1/house"] and "problems=stale" in later["meter p1/house"]


def test_redraw_in_place_leaves_no_stale_lines_and_stays_inside_the_width() -> None:
    out = io.StringIO()
    screen = Screen(out, size=lambda: (40, 8))
    model = ScreenModel(40, 8)
    long = [[("x" * 100, "red")], [("second", "")], [("third", "bold"), ("!" * 60, "")]]
    screen.open()
    screen.draw(long + [[("more", "")]] * 10)  # taller than the screen: cut, never scrolled
    model.feed(out.getvalue())
    assert model.lines()[6].startswith("... ") and model.lines()[7] == ""
    out.seek(0), out.truncate()
    screen.draw([[("short", "")]])
    model.feed(out.getvalue())
    assert model.problems == []
    assert model.lines() == ["short"] + [""] * 7
    assert all(len(line) <= 39 for line in model.lines())


def test_notes_are_not_problems_in_the_records() -> None:
    feeder = Feeder()
    feeder.healthy_site("p1", {"house": ("primary", "1")})
    feeder.send("p1/house/health", {"connected": True, "dropped": {"crc": 1}})
    line = records(feeder.rows())["meter p1/house"]
    assert line.startswith("p1/house meter ok ") and "problems=- notes=dropped" in line


def test_usage_and_configuration_errors_are_one_line_each(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from p1daemon.cli import main

    runner = CliRunner()
    bad_prefix = runner.invoke(main, ["watch", "--once", "--prefix", "p1/#"])
    assert bad_prefix.exit_code == 2 and "'#' is not allowed" in bad_prefix.output
    broken = tmp_path / "broken.toml"
    broken.write_text("[mqtt]\nport = 'many'\n")
    result = runner.invoke(main, ["watch", "--once", "--config", str(broken)])
    assert result.exit_code == 1 and "mqtt.port" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
