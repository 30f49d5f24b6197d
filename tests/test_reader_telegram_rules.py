"""Issue 9's telegram rules (items 3-5) through a real meter reader reading a real pty.

The framer and parser tests pin each rule on bytes; these prove the daemon's own path, a
`MeterReader` on a pseudo-terminal, applies them too, including across a reconnect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_daemon_support import CollectingSink, PtyMeter, wait_until
from test_daemon_support import start_reader as start

from p1daemon.config.model import MeterConfig
from p1daemon.daemon.reader import MeterReader
from p1daemon.frame.crc import crc16_arc_reference

FAST = {"reconnect_initial_s": 0.02, "reconnect_max_s": 0.1}


def make_meter(source: str, **keys: Any) -> MeterConfig:
    return MeterConfig.model_validate({"name": "house", "source": source, **FAST, **keys})


def telegram(lines: list[str], *, crc: bool, header: str = "ISk5\\2MT382-1004") -> bytes:
    body = ("/" + header + "\r\n\r\n" + "".join(line + "\r\n" for line in lines) + "!").encode()
    return body + (f"{crc16_arc_reference(body):04X}" if crc else "").encode() + b"\r\n"


def t1_values(sink: CollectingSink) -> list[float | None]:
    return [reading.import_.t1_kwh for reading in sink.of("house")]


def send_until_accepted(pty: PtyMeter, sink: CollectingSink, data: bytes, count: int) -> bool:
    """A port flushes its input on open: repeat until the reader has taken `count` readings."""
    for _ in range(100):
        pty.write_all(data)
        if wait_until(lambda: len(sink.of("house")) >= count, timeout=0.05):
            return True
    return False


def test_dsmr22_text_message_with_slash_is_one_reading_not_a_phantom(
    tmp_path: Path, readers: list[MeterReader]
) -> None:
    pty = PtyMeter(tmp_path / "p1").plug()
    sink = CollectingSink()
    reader = start(readers, make_meter(str(pty.link)), sink)
    lines = [
        "0-0:96.1.1(4B384547303034303436333935353037)",
        "1-0:1.8.1(00123.456*kWh)",
        "0-0:96.13.0(Storing? Zie http://meter.example/storing)",  # plain text, as DSMR 2.2 has
        "1-0:1.7.0(0000.32*kW)",
    ]
    try:
        assert send_until_accepted(pty, sink, telegram(lines, crc=False), 1)
        pty.write_all(telegram(lines, crc=False))
        assert wait_until(lambda: len(sink.of("house")) >= 2)
    finally:
        pty.unplug()
    assert wait_until(lambda: reader.stats.state == "waiting")
    # Every reading is the whole telegram; none is a tail with every register null.
    assert t1_values(sink) == [123.456] * len(sink.of("house"))
    assert all(r.import_.power_kw == 0.32 for r in sink.of("house"))
    assert "truncated" not in reader.stats.snapshot()["dropped"]


def test_lower_case_and_prefixed_units_reach_the_sink_in_kwh(
    tmp_path: Path, readers: list[MeterReader]
) -> None:
    pty = PtyMeter(tmp_path / "p1").plug()
    sink = CollectingSink()
    start(readers, make_meter(str(pty.link)), sink)
    lines = [
        "1-3:0.2.8(50)",
        "1-0:1.8.1(004321007*wh)",
        "1-0:1.8.2(0000.001*mWh)",
        "1-0:2.8.1(000000.5*KWH)",
        "1-0:2.8.2(000123*kvarh)",
        "1-0:1.7.0(01234*w)",
    ]
    try:
        assert send_until_accepted(pty, sink, telegram(lines, crc=True), 1)
    finally:
        pty.unplug()
    reading = sink.of("house")[0]
    assert reading.import_.t1_kwh == 4321.007
    assert reading.import_.t2_kwh == 1.0
    assert reading.import_.total_kwh == 4322.007
    assert reading.export.t1_kwh == 0.5
    assert reading.export.t2_kwh is None and reading.export.total_kwh is None
    assert reading.other == {"1-0:2.8.2": "(000123*kvarh)"}
    assert reading.import_.power_kw == 1.234


def test_a_meter_that_sent_crcs_must_keep_sending_them_across_a_reconnect(
    tmp_path: Path, readers: list[MeterReader]
) -> None:
    # A Hungarian-style meter: CRC, but no version object that would demand one.
    def lines(seq: int) -> list[str]:
        return ["0-0:96.1.0(4B384547)", f"1-0:1.8.1({seq:06d}.000*kWh)"]

    pty = PtyMeter(tmp_path / "p1").plug()
    sink = CollectingSink()
    reader = start(readers, make_meter(str(pty.link)), sink)
    try:
        assert send_until_accepted(pty, sink, telegram(lines(1), crc=True), 1)
        pty.write_all(telegram(lines(2), crc=False) + telegram(lines(3), crc=True))
        assert wait_until(lambda: 3.0 in t1_values(sink))
        assert reader.stats.snapshot()["dropped"].get("missing_crc") == 1
        pty.unplug()
        assert wait_until(lambda: reader.stats.state == "waiting")
        pty.plug()
        count = len(sink.of("house"))
        assert send_until_accepted(pty, sink, telegram(lines(4), crc=True), count + 1)
        pty.write_all(telegram(lines(5), crc=False) + telegram(lines(6), crc=True))
        assert wait_until(lambda: 6.0 in t1_values(sink))
    finally:
        pty.unplug()
    assert 2.0 not in t1_values(sink) and 5.0 not in t1_values(sink)
    assert reader.stats.snapshot()["dropped"].get("missing_crc") == 2


def test_a_dsmr22_meter_without_crcs_keeps_being_accepted(
    tmp_path: Path, readers: list[MeterReader]
) -> None:
    pty = PtyMeter(tmp_path / "p1").plug()
    sink = CollectingSink()
    reader = start(readers, make_meter(str(pty.link)), sink)
    data = telegram(["0-0:96.1.1(4B384547)", "1-0:1.8.1(00007.000*kWh)"], crc=False)
    try:
        assert send_until_accepted(pty, sink, data, 1)
        pty.write_all(data)
        assert wait_until(lambda: len(sink.of("house")) >= 2)
    finally:
        pty.unplug()
    assert reader.stats.snapshot()["dropped"].get("missing_crc") is None
