"""A history on a full filesystem does not lose or delay a single published reading
(issue 11's proof): the real daemon with its history on a small tmpfs that the test
fills up, the outbox on the ordinary disk, two meters on ptys, a real mosquitto.

Every reading sent reaches the subscriber, in order, at the pace of the same daemon
writing to a healthy disk moments before (compared generously: the machine is shared);
`daemon/health` shows the history failing; once the disk has room again the rows held
in memory are written, and the report shows every quarter as published.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from history_e2e_support import ClockedMeter, config_text, report, start_daemon, stop_daemon
from mosquitto_broker import Broker, Received, Subscriber
from small_disk import fill, small_tmpfs
from test_history_e2e import (
    EANS,
    assert_published_equals_truth,
    assert_report_equals_published,
    csv_quarters,
    docs_on,
    make_meters,
    wait_for_month,
    wait_for_quarter,
    warm_up,
)

PACE_S = 0.004  # between the two meters' telegrams: ~ 250 readings a second


def send_paced(meters: list[ClockedMeter], end: datetime) -> dict[tuple[str, str], float]:
    """Send until the meters' clocks pass `end`; (meter, stamp) -> wall time sent."""
    sent: dict[tuple[str, str], float] = {}
    while any(m.at <= end for m in meters):
        for meter in meters:
            if meter.at <= end:
                at = meter.send()
                sent[(meter.name, at.astimezone(UTC).isoformat())] = time.time()
        time.sleep(PACE_S)
    return sent


def latencies(
    sub: Subscriber, sent: dict[tuple[str, str], float], timeout: float = 30
) -> tuple[list[float], float]:
    """Wait for every reading in `sent`: the delay of each from write to delivery, and
    readings delivered per second from the first write to the last delivery."""

    def stamps(messages: list[Received]) -> dict[tuple[str, str], float]:
        out = {}
        for m in messages:
            if m.topic.endswith("/reading"):
                doc = m.json()
                stamp = datetime.fromisoformat(doc["timestamp"]).astimezone(UTC)
                key = (doc["meter"], stamp.isoformat())
                out.setdefault(key, m.at)
        return out

    def arrived(messages: list[Received]) -> bool:
        return sent.keys() <= stamps(messages).keys()

    sub.wait_for(arrived, timeout, f"all {len(sent)} readings")
    with sub._lock:
        got = stamps(list(sub.messages))
    delays = [got[key] - at for key, at in sent.items()]
    span = max(got[key] for key in sent) - min(sent.values())
    return delays, len(sent) / span


def in_order(sub: Subscriber, meter: str) -> list[datetime]:
    firsts: list[datetime] = []
    for m in sub.on(f"p1/{meter}/reading"):
        at = datetime.fromisoformat(m.json()["timestamp"])
        if at not in firsts:
            firsts.append(at)
    return firsts


def history_health(sub: Subscriber) -> dict[str, Any] | None:
    reports = sub.on("p1/daemon/health")
    if not reports:
        return None
    views: dict[str, Any] = reports[-1].json().get("views", {})
    return views.get("history")


def test_a_full_history_disk_neither_loses_nor_delays_a_published_reading(
    tmp_path: Path, broker: Broker, subscriber: Subscriber
) -> None:
    with small_tmpfs(tmp_path / "disk", 512) as disk:
        meters = make_meters(tmp_path)
        config = tmp_path / "p1daemon.toml"
        roles = {"house": "primary", "car": "secondary"}
        config.write_text(
            config_text(
                tmp_path,
                broker.port,
                [(m.name, roles[m.name], EANS[m.name], m.pty.link) for m in meters],
                history=disk / "history.db",
                outbox=tmp_path / "state" / "outbox.db",
                retry_s=0.5,
            ),
            encoding="utf-8",
        )
        log = tmp_path / "daemon.log"
        daemon = start_daemon(config, log)
        try:
            for meter in meters:
                warm_up(meter, subscriber)
            # Healthy disk: three quarters, written.
            healthy_end = datetime(2026, 11, 2, 9, 46, tzinfo=UTC)
            healthy, healthy_rate = latencies(subscriber, send_paced(meters, healthy_end))
            for meter in meters:
                wait_for_month(subscriber, meter.name, 3)
            health = history_health(subscriber)
            assert health is not None and health["ok"] is True, health

            # Full disk: three more quarters close while nothing can be written.
            filler = fill(disk)
            full_end = datetime(2026, 11, 2, 10, 31, tzinfo=UTC)
            full, full_rate = latencies(subscriber, send_paced(meters, full_end))
            for meter in meters:
                wait_for_quarter(subscriber, meter.name, datetime(2026, 11, 2, 10, 15, tzinfo=UTC))
            subscriber.wait_for(
                lambda _: (h := history_health(subscriber)) is not None and h["ok"] is False,
                15,
                "daemon/health showing the history failing",
            )
            failing = history_health(subscriber)
            assert failing is not None and failing["pending"] > 0, failing
            assert "full" in str(failing["error"]).lower(), failing
            months_before = {m.name: len(docs_on(subscriber, f"p1/{m.name}/month")) for m in meters}

            # Room again: the held rows are written on the next retry.
            filler.unlink()
            subscriber.wait_for(
                lambda _: (
                    (h := history_health(subscriber)) is not None
                    and h["ok"] is True
                    and h["pending"] == 0
                ),
                15,
                "daemon/health showing the history written again",
            )
            for meter in meters:
                wait_for_month(subscriber, meter.name, 6)
                assert (
                    len(docs_on(subscriber, f"p1/{meter.name}/month")) > months_before[meter.name]
                )
            recovered = history_health(subscriber)
            assert recovered is not None and recovered["dropped"] == 0
        finally:
            code = stop_daemon(daemon)
            for meter in meters:
                meter.pty.unplug()
        assert code == 0, log.read_text()[-3000:]
        text = log.read_text()
        assert "Traceback" not in text
        assert text.count("history: cannot write") == 1, text[-3000:]  # logged once

        # Not a single reading lost or out of order, during either phase.
        for meter in meters:
            received = in_order(subscriber, meter.name)
            expected = sorted(at for at in meter.sent if at >= received[0])
            assert [r.astimezone(UTC) for r in received] == expected

        # At the normal pace: generous bounds, the machine is shared with other work.
        assert statistics.median(full) <= 3 * statistics.median(healthy) + 0.25, (
            statistics.median(healthy),
            statistics.median(full),
        )
        assert max(full) <= 3 * max(healthy) + 1.0, (max(healthy), max(full))
        assert full_rate >= healthy_rate / 3, (healthy_rate, full_rate)

        # The held rows made it: the report shows every quarter as published.
        published = {m.name: docs_on(subscriber, f"p1/{m.name}/quarter") for m in meters}
        for meter in meters:
            assert assert_published_equals_truth(meter, published[meter.name]) >= 6
        reported = csv_quarters(
            report(config, "--period", "2026-11-02", "--by", "quarter", "--format", "csv")
        )
        assert assert_report_equals_published(reported, published) == sum(
            len(d) for d in published.values()
        )
