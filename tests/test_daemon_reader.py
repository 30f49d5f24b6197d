"""Meter readers against real pseudo-terminals and a loopback bridge: unplug, silence,
floods, meter swaps. Backoff and timeouts are tiny so every scenario takes a fraction of
a second."""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_daemon_support import (
    CollectingSink,
    PtyMeter,
    TcpBridge,
    keep_sending,
    seq_of,
    telegram,
    wait_until,
)
from test_daemon_support import start_reader as start

from p1daemon.config.model import MeterConfig
from p1daemon.daemon.reader import MeterReader
from p1daemon.reading.meter import MeterReading

FAST = {"reconnect_initial_s": 0.02, "reconnect_max_s": 0.1}
READER_LOG = "p1daemon.daemon.reader"


def make_meter(name: str, source: str, **keys: Any) -> MeterConfig:
    return MeterConfig.model_validate({"name": name, "source": source, **FAST, **keys})


def messages(caplog: pytest.LogCaptureFixture, text: str, level: int | None = None) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == READER_LOG and text in r.getMessage() and (level is None or r.levelno == level)
    ]


def test_unplug_and_replug_resume_with_one_log_line_each_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, readers: list[MeterReader]
) -> None:
    caplog.set_level(logging.DEBUG, logger="p1daemon")
    pty = PtyMeter(tmp_path / "p1-usb").plug()
    sink = CollectingSink()
    reader = start(readers, make_meter("house", str(pty.link)), sink)
    assert keep_sending(pty, sink, "house", 1)
    for seq in (2, 3):
        pty.write_all(telegram(seq))
        assert wait_until(lambda seq=seq: seq in sink.seqs("house"))

    pty.unplug()
    assert wait_until(lambda: reader.stats.state == "waiting")
    # Several reopen attempts fail while it is away; none of them is logged above debug.
    assert wait_until(lambda: len(messages(caplog, "still unavailable")) >= 3)
    assert reader.healthy()

    pty.plug()
    assert keep_sending(pty, sink, "house", 10)
    pty.write_all(telegram(11))
    assert wait_until(lambda: 11 in sink.seqs("house"))

    link = pty.link
    assert messages(caplog, "is gone", logging.WARNING) == [
        f"meter house: {link} is gone (read failed: device disconnected); "
        "retrying at least every 0.1 s"
    ]
    assert messages(caplog, "is back", logging.INFO) == [f"meter house: {link} is back"]
    seqs = sink.seqs("house")
    assert seqs == sorted(seqs) and {1, 2, 3, 10, 11} <= set(seqs)
    snapshot = reader.stats.snapshot()
    assert snapshot["reconnects"] == 1
    assert snapshot["accepted"] == len(seqs)
    assert snapshot["connected"] is True and snapshot["state"] == "reading"
    assert snapshot["line_settings"] == "115200 8N1"
    pty.unplug()


def test_port_missing_at_start_is_waited_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, readers: list[MeterReader]
) -> None:
    caplog.set_level(logging.INFO, logger="p1daemon")
    link = tmp_path / "later"
    sink = CollectingSink()
    reader = start(readers, make_meter("house", str(link)), sink)
    assert wait_until(lambda: reader.stats.state == "waiting")
    time.sleep(0.3)  # several failed attempts at 0.02..0.1 s
    pty = PtyMeter(link).plug()
    try:
        assert keep_sending(pty, sink, "house", 1)
    finally:
        pty.unplug()
    assert messages(caplog, "not available") == [
        f"meter house: {link} is not available (cannot open: No such file or directory); "
        "retrying at least every 0.1 s"
    ]
    assert messages(caplog, "is back") == [f"meter house: {link} is back"]
    assert reader.stats.reconnects == 0  # the first successful open is no reconnect


def test_silent_meter_is_reopened_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, readers: list[MeterReader]
) -> None:
    caplog.set_level(logging.INFO, logger="p1daemon")
    pty = PtyMeter(tmp_path / "quiet").plug()
    sink = CollectingSink()
    reader = start(readers, make_meter("house", str(pty.link), silence_timeout_s=0.2), sink)
    try:
        assert keep_sending(pty, sink, "house", 1)
        silences = reader.stats.silences
        assert wait_until(lambda: reader.stats.silences >= silences + 3)
        # each silence reopened the port (counted just after the silence, so wait for it)
        assert wait_until(lambda: reader.stats.reconnects >= 3)
        assert keep_sending(pty, sink, "house", 2)
        reader.request_stop()
        assert reader.join(2)
    finally:
        pty.unplug()
    # Under load a silence may also fall before telegram 1 got through, so count episodes:
    # each is one warning and one "again", however many reopens it took.
    events = [m for m in messages(caplog, "") if "no valid telegram" in m or "arriving again" in m]
    warning = f"meter house: no valid telegram for 0.2 s from {pty.link}; reopening it"
    again = "meter house: telegrams are arriving again"
    assert events[-2:] == [warning, again]
    assert events == [warning, again] * (len(events) // 2)
    assert len(events) // 2 < reader.stats.silences


def test_equipment_id_change_flags_exactly_that_reading(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, readers: list[MeterReader]
) -> None:
    capture = tmp_path / "swap.txt"
    capture.write_bytes(
        telegram(1, "E-OLD") + telegram(2, "E-OLD") + telegram(3, "E-NEW") + telegram(4, "E-NEW")
    )
    sink = CollectingSink()
    meter = make_meter("house", f"replay:{capture}", replay_interval_s=0, ean="871685900012345674")
    reader = start(readers, meter, sink)
    assert wait_until(lambda: reader.ended)
    got = sink.of("house")
    assert [(seq_of(r), r.meter_replaced) for r in got] == [
        (1, False),
        (2, False),
        (3, True),
        (4, False),
    ]
    assert {(r.meter, r.role, r.ean) for r in got} == {("house", "primary", "871685900012345674")}
    assert messages(caplog, "equipment id changed") == [
        "meter house: equipment id changed from E-OLD to E-NEW (meter replaced?)"
    ]
    assert reader.stats.snapshot()["state"] == "ended"
    assert reader.stats.equipment_id == "E-NEW"


def test_flooding_meter_does_not_delay_the_other(
    tmp_path: Path, readers: list[MeterReader]
) -> None:
    noisy = PtyMeter(tmp_path / "noisy").plug()
    calm = PtyMeter(tmp_path / "calm").plug()
    sink = CollectingSink()
    flooding = threading.Event()
    flooding.set()

    def flood() -> None:
        junk = os.urandom(4096)
        while flooding.is_set():
            if not noisy.write(junk):
                time.sleep(0.0005)

    flooder = threading.Thread(target=flood, daemon=True)
    try:
        # A fixed rate, so the junk goes through the framer (auto-detection would discard it).
        noisy_meter = make_meter("noisy", str(noisy.link), baudrate=115200)
        noisy_reader = start(readers, noisy_meter, sink)
        start(readers, make_meter("calm", str(calm.link), role="secondary"), sink)
        flooder.start()
        assert keep_sending(calm, sink, "calm", 1)
        sent: dict[int, datetime] = {}
        for seq in range(100, 140):
            sent[seq] = datetime.now(UTC)
            calm.write_all(telegram(seq))
            time.sleep(0.02)
        assert wait_until(lambda: set(sent) <= set(sink.seqs("calm")), timeout=3)
        latency = {
            seq_of(r): (r.received_at - sent[seq_of(r)]).total_seconds()
            for r in sink.of("calm")
            if seq_of(r) in sent
        }
        assert max(latency.values()) < 0.5, latency
        noisy_stats = noisy_reader.stats.snapshot()
        assert noisy_stats["accepted"] == 0
        assert noisy_stats["dropped_total"] > 0
        assert noisy_reader.healthy()
    finally:
        flooding.clear()
        flooder.join(2)
        noisy.unplug()
        calm.unplug()


def test_network_bridge_disconnect_and_reconnect(
    caplog: pytest.LogCaptureFixture, readers: list[MeterReader]
) -> None:
    caplog.set_level(logging.INFO, logger="p1daemon")
    bridge = TcpBridge()
    sink = CollectingSink()
    source = f"socket://127.0.0.1:{bridge.port}"
    reader = start(readers, make_meter("carport", source, role="secondary"), sink)

    def deliver(seq: int) -> bool:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            bridge.send(telegram(seq))
            if wait_until(lambda: seq in sink.seqs("carport"), timeout=0.05):
                return True
        return False

    try:
        assert deliver(1)
        bridge.drop_client()
        assert wait_until(lambda: bridge.accepted == 2)
        assert deliver(2)
        bridge.stop()  # the bridge loses power for a while
        assert wait_until(lambda: reader.stats.state == "waiting")
        bridge.start()
        assert deliver(3)
        reader.request_stop()  # before the bridge goes: its end is no part of this story
        assert reader.join(2)
    finally:
        bridge.stop()
    assert sink.seqs("carport")[-1] == 3
    assert reader.stats.reconnects == 2
    assert messages(caplog, "is gone") == [
        f"meter carport: {source} is gone (connection closed by the bridge); "
        "retrying at least every 0.1 s",
        f"meter carport: {source} is gone (connection closed by the bridge); "
        "retrying at least every 0.1 s",
    ]
    assert messages(caplog, "is back") == [f"meter carport: {source} is back"] * 2


class FailingOnceSink(CollectingSink):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def submit(self, reading: MeterReading) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("boom")
        super().submit(reading)


def test_unexpected_error_restarts_the_reader(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, readers: list[MeterReader]
) -> None:
    capture = tmp_path / "loop.txt"
    capture.write_bytes(telegram(1) + telegram(2))
    sink = FailingOnceSink()
    meter = make_meter("house", f"replay:{capture}", replay_interval_s=0.01, replay_loop=True)
    start(readers, meter, sink)
    assert wait_until(lambda: len(sink.of("house")) >= 3)
    assert messages(caplog, "unexpected error") == [
        "meter house: unexpected error, restarting the reader: RuntimeError: boom"
    ]


def test_stop_is_prompt_even_while_backing_off(tmp_path: Path) -> None:
    meter = MeterConfig(name="house", source=str(tmp_path / "absent"))  # backoff up to 5 s
    reader = MeterReader(meter, CollectingSink())
    reader.start()
    time.sleep(0.6)  # first retries done; now waiting a second or more
    began = time.monotonic()
    reader.request_stop()
    assert reader.join(1.0)
    assert time.monotonic() - began < 0.5
    assert reader.stats.state == "stopped"
