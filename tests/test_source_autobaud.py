"""The 115200 8N1 / 9600 7E1 decision, on byte streams as a port would deliver them.

Pseudo-terminals ignore baud rate and parity, so the mis-read bytes are simulated the way
a UART produces them: 7E1 characters read as 8N1 carry their parity bit in bit 7, and a
9600 baud stream sampled at 115200 turns into framing-error noise (0x00, 0x80, 0xF8...).
"""

from __future__ import annotations

from test_daemon_support import dsmr22_telegram, telegram

from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.model import Reading
from p1daemon.source.autobaud import DEFAULT_WINDOW_S, LineSettingsDetector, Verdict
from p1daemon.source.line import DSMR2, DSMR4


def as_8n1(data_7e1: bytes) -> bytes:
    """7E1 characters read by an 8N1 UART: the even-parity bit lands in bit 7."""
    return bytes(b | ((bin(b).count("1") & 1) << 7) for b in data_7e1)


SLOW_AT_FAST_NOISE = bytes([0x00, 0x80, 0xF8, 0x00, 0xFE, 0x80, 0x00, 0xE0]) * 64


def feed_in_chunks(
    detector: LineSettingsDetector, data: bytes, now: float, size: int = 64
) -> Verdict:
    verdict = Verdict.LISTEN
    for i in range(0, len(data), size):
        verdict = detector.observe(data[i : i + size], now)
        if verdict is not Verdict.LISTEN:
            return verdict
    return verdict


def readings(data: bytes) -> list[Reading]:
    stream = ReadingStream(TelegramDecoder())
    return [e for e in [*stream.feed(data), *stream.flush()] if isinstance(e, Reading)]


def test_dsmr5_meter_locks_on_the_first_candidate_and_keeps_the_telegram() -> None:
    detector = LineSettingsDetector()
    assert detector.begin(0.0) == DSMR4
    stream = telegram(1)[40:] + telegram(2) + telegram(3)  # plugged in mid-telegram
    assert feed_in_chunks(detector, stream, 0.5) is Verdict.LOCKED
    assert detector.current == DSMR4
    sample = detector.take_sample()
    assert [r.import_.t1_kwh for r in readings(sample)] == [0.002]


def test_dsmr22_meter_read_as_8n1_switches_at_once_then_locks_on_7e1() -> None:
    detector = LineSettingsDetector()
    detector.begin(0.0)
    wire = b"".join(dsmr22_telegram(i) for i in range(3))
    assert feed_in_chunks(detector, as_8n1(wire), 0.1) is Verdict.SWITCH
    assert detector.advance(0.1) == DSMR2
    assert feed_in_chunks(detector, wire, 0.2) is Verdict.LOCKED
    assert detector.current == DSMR2
    assert detector.tried == [DSMR4, DSMR2]
    assert len(readings(detector.take_sample())) == 1


def test_slow_meter_sampled_too_fast_switches_without_waiting() -> None:
    detector = LineSettingsDetector()
    detector.begin(0.0)
    assert feed_in_chunks(detector, SLOW_AT_FAST_NOISE, 0.3) is Verdict.SWITCH


def test_plug_in_noise_before_a_good_telegram_is_tolerated() -> None:
    detector = LineSettingsDetector()
    detector.begin(0.0)
    assert feed_in_chunks(detector, b"\x00" * 12 + telegram(5), 0.1) is Verdict.LOCKED
    assert detector.current == DSMR4


def test_plausible_text_that_never_checks_out_gets_the_full_window() -> None:
    detector = LineSettingsDetector()
    detector.begin(0.0)
    good = telegram(1)
    broken = good[:-6] + (b"0000\r\n" if not good.endswith(b"0000\r\n") else b"FFFF\r\n")
    assert feed_in_chunks(detector, broken * 5, 1.0) is Verdict.LISTEN
    assert detector.observe(b"", DEFAULT_WINDOW_S - 0.1) is Verdict.LISTEN
    assert detector.observe(b"", DEFAULT_WINDOW_S) is Verdict.SWITCH


def test_silence_cycles_through_the_candidates_for_ever() -> None:
    detector = LineSettingsDetector(window_s=2.0)
    detector.begin(0.0)
    seen = []
    now = 0.0
    for _ in range(4):
        now += 2.0
        assert detector.observe(b"", now) is Verdict.SWITCH
        seen.append(detector.advance(now))
    assert seen == [DSMR2, DSMR4, DSMR2, DSMR4]


def test_a_telegram_arriving_in_one_big_chunk_is_kept_whole() -> None:
    detector = LineSettingsDetector(max_frame=1024)
    detector.begin(0.0)
    big = b"x" * 5000 + telegram(9) + b"y" * 5000
    assert detector.observe(big, 0.1) is Verdict.LOCKED
    assert [r.import_.t1_kwh for r in readings(detector.take_sample())] == [0.009]


def test_restart_after_reopen_keeps_the_current_candidate() -> None:
    detector = LineSettingsDetector()
    detector.begin(0.0)
    detector.advance(1.0)
    assert detector.begin(50.0) == DSMR2  # a reopen does not start the cycle over
    assert detector.observe(b"", 50.0 + DEFAULT_WINDOW_S - 1) is Verdict.LISTEN
