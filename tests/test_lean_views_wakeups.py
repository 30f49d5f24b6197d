"""Idle wake-ups without losing anything: ticks only when due, month documents at once
after a commit, readers that wait long and still stop at once, evidence frames that
become bytes only when kept (and served meters that still get bytes)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from history_synth import SynthMeter, Truth, run_meter, telegram_of
from test_daemon_support import CollectingSink, telegram, wait_until

from p1daemon.config.model import MeterConfig
from p1daemon.daemon.dispatcher import Dispatcher
from p1daemon.daemon.processor import Document, InputEvent, Telegram, wire_bytes
from p1daemon.daemon.reader import MeterReader
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Frame
from p1daemon.reading.meter import MeterReading
from p1daemon.source.replay import ReplaySource
from p1daemon.source.tcp import TcpSource
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import MeterSpec
from p1daemon.views.history.processor import HistoryProcessor
from p1daemon.views.history.settings import HistorySettings

EAN = "871685900012345674"


class Ticked:
    """A processor that says when it is due (`TicksWhenDue`) and counts its ticks."""

    name = "ticked"

    def __init__(self, due: Callable[[], float | None]) -> None:
        self.due = due
        self.ticks: list[float] = []
        self.request: Callable[[], None] | None = None

    def start(self) -> Sequence[Document]:
        return ()

    def on_reading(self, reading: MeterReading, now: datetime) -> Sequence[Document]:
        return ()

    def tick_due(self, now: datetime) -> float | None:
        return self.due()

    def on_tick(self, now: datetime) -> Sequence[Document]:
        self.ticks.append(time.monotonic())
        return ()

    def on_event(self, event: InputEvent) -> Sequence[Document]:
        return ()

    def stop(self) -> Sequence[Document]:
        return ()


class Asking(Ticked):
    """... and is given a tick request (`RequestsTicks`)."""

    def set_tick_request(self, request: Callable[[], None]) -> None:
        self.request = request


def test_a_processor_with_nothing_due_is_never_ticked_and_one_due_is_on_the_beat() -> None:
    idle = Ticked(lambda: None)
    pending = [True]
    once = Ticked(lambda: 0.0 if pending[0] else None)
    original = once.on_tick

    def tick_once(now: datetime) -> Sequence[Document]:
        pending[0] = False
        return original(now)

    once.on_tick = tick_once  # type: ignore[method-assign]
    dispatcher = Dispatcher([idle, once], [], tick_s=0.05)
    dispatcher.start()
    try:
        assert wait_until(lambda: len(once.ticks) == 1, 2)
        time.sleep(0.3)
    finally:
        dispatcher.stop(1.0)
    assert idle.ticks == [] and len(once.ticks) == 1


def test_a_requested_tick_comes_at_once_not_on_the_next_beat() -> None:
    work = [False]
    asking = Asking(lambda: 0.0 if work[0] else None)
    dispatcher = Dispatcher([asking], [], tick_s=30.0)  # the beat would be 30 s away
    dispatcher.start()
    try:
        assert asking.request is not None
        time.sleep(0.1)
        work[0] = True
        asked = time.monotonic()
        asking.request()
        assert wait_until(lambda: bool(asking.ticks), 2)
        work[0] = False
        assert asking.ticks[0] - asked < 0.5
    finally:
        dispatcher.stop(1.0)


class Collecting:
    name = "collecting"

    def __init__(self) -> None:
        self.documents: list[tuple[float, Document]] = []
        self.telegrams: list[tuple[str, bytes]] = []

    def start(self, subscriptions: Sequence[str], events: object) -> None:
        pass

    def on_reading(self, reading: MeterReading) -> None:
        pass

    def on_documents(self, documents: Sequence[Document]) -> None:
        self.documents.extend((time.monotonic(), d) for d in documents)

    def on_telegram(self, meter: str, raw: bytes) -> None:
        self.telegrams.append((meter, raw))

    def stop(self, timeout: float) -> None:
        pass


def test_month_documents_go_out_right_after_the_commit(tmp_path: Path) -> None:
    """No tick beat (an hour away) and no reading after the one that closed the quarter:
    the writer's commit asks for the tick that sends the month document."""
    settings = HistorySettings(path=str(tmp_path / "history.db"), commit_delay_s=0.05)
    history = HistoryProcessor(settings, SiteSettings(), [MeterSpec("house", "primary", EAN)], "p1")
    output = Collecting()
    dispatcher = Dispatcher([history], [output], tick_s=3600.0)
    dispatcher.start()
    try:
        start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
        readings = list(
            run_meter(SynthMeter("house", ean=EAN), start, start + timedelta(minutes=16), Truth())
        )
        closing = next(
            i for i, r in enumerate(readings) if r.timestamp and r.timestamp.minute == 15
        )
        for reading in readings[: closing + 1]:
            dispatcher.submit(reading)
        fed = time.monotonic()
        assert wait_until(lambda: any(d.topic == "p1/house/month" for _, d in output.documents), 5)
        sent = next(at for at, d in output.documents if d.topic == "p1/house/month")
        assert sent - fed < 2.0
    finally:
        dispatcher.stop(2.0)


def test_a_kept_telegram_comes_as_a_frame_and_is_not_served(tmp_path: Path) -> None:
    """The reader of a meter that is not served hands on frames: the history makes the
    bytes of the edges it keeps (the very bytes the reader would have made), and the TCP
    fan-out gets nothing."""
    settings = HistorySettings(path=str(tmp_path / "history.db"), commit_delay_s=0.05)
    history = HistoryProcessor(settings, SiteSettings(), [MeterSpec("house", "primary", EAN)], "p1")
    handed: list[Telegram] = []
    keep = history.on_telegram

    def on_telegram(meter: str, raw: Telegram) -> None:
        handed.append(raw)
        keep(meter, raw)

    history.on_telegram = on_telegram  # type: ignore[method-assign]
    served = Collecting()
    dispatcher = Dispatcher([history], [served])
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    readings = list(
        run_meter(SynthMeter("house", ean=EAN), start, start + timedelta(minutes=20), Truth())
    )
    capture = tmp_path / "capture.txt"
    capture.write_bytes(b"".join(telegram_of(r) for r in readings))
    meter = MeterConfig.model_validate(
        {"name": "house", "ean": EAN, "source": f"replay:{capture}", "replay_interval_s": 0}
    )
    dispatcher.start()
    reader = MeterReader(meter, dispatcher)
    reader.start()
    try:
        assert wait_until(lambda: reader.ended, 10)
    finally:
        reader.request_stop()
        reader.join(2.0)
        dispatcher.stop(2.0)
    assert handed and all(isinstance(raw, Frame) for raw in handed)
    assert served.telegrams == []
    frames = TelegramDecoder().feed(capture.read_bytes())
    assert [wire_bytes(f) for f in frames if isinstance(f, Frame)] == [
        telegram_of(r) for r in readings
    ]


def test_bytes_are_served_and_kept_frames_are_kept_only() -> None:
    kept: list[tuple[str, Telegram]] = []

    class Keeper(Ticked):
        def wants_telegrams(self, meter: str) -> bool:
            return True

        def on_telegram(self, meter: str, raw: Telegram) -> None:
            kept.append((meter, raw))

    served = Collecting()
    dispatcher = Dispatcher([Keeper(lambda: None)], [served])
    dispatcher.start()
    reading = MeterReading(header="X", meter="house", role="primary", received_at=datetime.now(UTC))
    frame = Frame(b"/X\r\n\r\n!", 0x1234, True)
    try:
        dispatcher.submit(reading, b"served bytes")
        dispatcher.submit(reading, frame)
    finally:
        dispatcher.stop(1.0)
    assert served.telegrams == [("house", b"served bytes")]
    assert kept == [("house", b"served bytes"), ("house", frame)]
    assert wire_bytes(frame) == b"/X\r\n\r\n!1234\r\n"


def _stop_time(reader: MeterReader) -> float:
    started = time.monotonic()
    reader.request_stop()
    assert reader.join(3.0)
    return time.monotonic() - started


def test_a_reader_waiting_long_for_a_replay_stops_at_once(tmp_path: Path) -> None:
    capture = tmp_path / "capture.txt"
    capture.write_bytes(telegram(1) + telegram(2))
    meter = MeterConfig.model_validate(
        {"name": "house", "source": f"replay:{capture}", "replay_interval_s": 3600}
    )
    sink = CollectingSink()
    reader = MeterReader(meter, sink)
    reader.start()
    assert wait_until(lambda: len(sink.of("house")) == 1)
    time.sleep(0.3)  # now waiting for the second telegram, an hour away
    assert _stop_time(reader) < 0.5
    source = ReplaySource(capture, interval_s=3600)
    assert source.interruptible
    assert not ReplaySource(capture, interval_s=1, sleep=lambda s: None).interruptible


def test_a_reader_waiting_long_for_a_quiet_bridge_stops_at_once_without_a_warning(
    caplog: object,
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    meter = MeterConfig.model_validate({"name": "house", "source": f"socket://127.0.0.1:{port}"})
    sink = CollectingSink()
    reader = MeterReader(meter, sink)
    reader.start()
    try:
        assert wait_until(lambda: bool(accepted))
        time.sleep(0.3)  # in a 5 s read of a bridge that sends nothing
        assert _stop_time(reader) < 0.5
        assert reader.stats.snapshot()["state"] == "stopped"
        assert reader.stats.snapshot()["reconnects"] == 0
    finally:
        listener.close()
        for sock in accepted:
            sock.close()
    source = TcpSource("127.0.0.1", 1)
    source.interrupt()
    assert source.interruptible
