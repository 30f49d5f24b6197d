"""One thread per meter: port bytes in, `MeterReading`s into the sink, for ever.

A reader never gives up and never takes the daemon down: a missing port is retried with
capped backoff, a silent meter has its port reopened, an unexpected error (a bug) is
logged and the reader starts over. Each of these events is logged once when it starts
and once when it ends, not on every retry, so a loose cable cannot fill the SD card.
Only a finite replay ends a reader by itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import cast

from p1daemon.config.model import MeterConfig
from p1daemon.daemon.backoff import Backoff
from p1daemon.daemon.processor import wire_bytes as wire_bytes  # re-exported
from p1daemon.daemon.sink import ReadingSink, WantsRaw
from p1daemon.daemon.stats import MeterStats
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped, Frame
from p1daemon.frame.framer import CrcMemory
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading
from p1daemon.source.base import ByteSource, EndOfData, Interruptible, SourceUnavailable
from p1daemon.source.factory import source_for
from p1daemon.source.spec import SourceKind

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.25
"""How long one read may wait on a source that cannot be interrupted (an RFC 2217
port): bounds how quickly its reader notices it must stop."""

IDLE_READ_TIMEOUT_S = 5.0
"""How long one read may wait on a source that `request_stop` interrupts: only the
health check's turn (`STALL_LIMIT_S`) and the silence timeout need it shorter. An idle
meter then costs a wake-up every few seconds, not four a second."""

STALL_LIMIT_S = 15.0
"""A reader whose loop has not turned for this long is hung (the watchdog must bite)."""

SourceFactory = Callable[[MeterConfig], ByteSource]

_Event = Reading | tuple[Reading, Frame] | Dropped


class _Silent(Exception):
    """No valid telegram within the silence timeout: reopen the port."""


class MeterReader:
    """Runs `meter`'s read loop on its own thread; see the module docstring."""

    def __init__(
        self,
        meter: MeterConfig,
        sink: ReadingSink,
        *,
        stats: MeterStats | None = None,
        source_factory: SourceFactory = source_for,
        read_timeout: float = READ_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        on_end: Callable[[], None] | None = None,
    ) -> None:
        self.meter = meter
        self._on_end = on_end
        self.stats = stats if stats is not None else MeterStats()
        self._sink = sink
        self._source_factory = source_factory
        self._read_timeout = read_timeout
        self._clock = clock
        self._stop = threading.Event()
        self._source: ByteSource | None = None  # the one `_run` reads, to interrupt it
        self._thread = threading.Thread(target=self._run, name=f"reader-{meter.name}", daemon=True)
        self._equipment_id: str | None = self.stats.equipment_id
        self._last_turn = clock()
        self._ended = False
        self._opened_before = False
        self._unavailable = False
        self._silent = False
        self._logged_line: str | None = None
        self._last_error: str | None = None
        self._watch_silence = meter.source_spec.kind is not SourceKind.REPLAY
        # Only a served meter (p1daemon.serve), or one whose telegrams a processor keeps
        # as evidence (the history), keeps each telegram for the sink: a served one's
        # bytes, a kept one's frame (the keeper makes bytes of the few it keeps).
        self._served = meter.serve is not None
        self._keeps_frames = self._served  # or kept: decided per connection, below
        # Outlives every connection: a meter that has sent CRCs must keep sending them.
        self._crc_memory = CrcMemory()

    @property
    def name(self) -> str:
        return self.meter.name

    @property
    def ended(self) -> bool:
        """A finite replay has been played to the end (a clean, final stop)."""
        return self._ended

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()
        source = self._source
        if isinstance(source, Interruptible):
            try:
                source.interrupt()  # a read waiting for the meter returns now
            except Exception as exc:  # the read's timeout still ends it
                log.debug("meter %s: cannot interrupt the read: %s", self.name, exc)

    def join(self, timeout: float) -> bool:
        """Wait for the thread; False if it is still running after `timeout`."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def healthy(self) -> bool:
        """Alive and turning (reading, or waiting to retry); an ended replay is fine too."""
        if self._ended:
            return True
        if not self._thread.is_alive():
            return False
        return self._clock() - self._last_turn < STALL_LIMIT_S

    # -- the loop --------------------------------------------------------------------

    def _run(self) -> None:
        meter = self.meter
        try:
            source = self._source_factory(meter)
        except Exception as exc:  # a configuration the loader should have refused
            log.error("meter %s: cannot set up %s: %s", self.name, meter.source, exc)
            self.stats.set_state("failed", connected=False)
            return
        self._source = source
        if self._stop.is_set() and isinstance(source, Interruptible):
            source.interrupt()  # a stop requested before the source existed
        backoff = Backoff(meter.reconnect_initial_s, meter.reconnect_max_s)
        while not self._stop.is_set():
            self._last_turn = self._clock()
            try:
                self._open(source)
                backoff.reset()
                self._read_until_trouble(source)
            except EndOfData:
                self._ended = True
                self.stats.set_state("ended", connected=False)
                log.info("meter %s: %s played to the end", self.name, source.description)
                if self._on_end is not None:
                    self._on_end()
                break
            except SourceUnavailable as exc:
                self._note_unavailable(source, str(exc), backoff)
                self._stop.wait(backoff.next_delay())
            except _Silent:
                pass  # reopen at once: the port itself may be fine
            except Exception as exc:  # a bug must cost a reconnect, not the meter
                self._note_error(exc)
                self._stop.wait(backoff.next_delay())
            finally:
                source.close()
        if not self._ended:
            self.stats.set_state("stopped", connected=False)

    def _open(self, source: ByteSource) -> None:
        source.open()
        if self._unavailable:
            log.info("meter %s: %s is back", self.name, source.description)
        elif not self._opened_before:
            log.info("meter %s: reading %s", self.name, source.description)
        if self._opened_before:
            self.stats.count_reconnect()
        self._opened_before = True
        self._unavailable = False
        self.stats.set_state("silent" if self._silent else "reading", connected=True)

    def _note_unavailable(self, source: ByteSource, reason: str, backoff: Backoff) -> None:
        self.stats.set_state("waiting", connected=False)
        if self._unavailable:
            log.debug("meter %s: %s still unavailable: %s", self.name, source.description, reason)
            return
        self._unavailable = True
        what = "is gone" if self._opened_before else "is not available"
        log.warning(
            "meter %s: %s %s (%s); retrying at least every %g s",
            self.name,
            source.description,
            what,
            reason,
            backoff.maximum,
        )

    def _note_error(self, exc: Exception) -> None:
        text = f"{type(exc).__name__}: {exc}"
        # The same error again (say, a sink that keeps failing) is logged once, not every retry.
        level = logging.DEBUG if text == self._last_error else logging.ERROR
        self._last_error = text
        log.log(
            level,
            "meter %s: unexpected error, restarting the reader: %s",
            self.name,
            text,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )

    def _read_until_trouble(self, source: ByteSource) -> None:
        meter = self.meter
        sink = self._sink
        self._keeps_frames = self._served or (
            isinstance(sink, WantsRaw) and sink.wants_telegrams(meter.name)
        )
        stream = ReadingStream(
            TelegramDecoder(
                check_crc=meter.check_crc,
                max_size=meter.max_frame_bytes,
                key=meter.key_bytes,
                auth_key=meter.auth_key_bytes,
                crc_memory=self._crc_memory,
            )
        )
        # One telegram parsed at a time, as `_handle` takes them (see parse/stream.py).
        feed: Callable[[bytes], Iterable[_Event]] = (
            stream.iter_framed if self._keeps_frames else stream.iter_readings
        )
        last_valid = self._clock()
        interruptible = isinstance(source, Interruptible)
        longest = max(self._read_timeout, IDLE_READ_TIMEOUT_S)
        silence_s = meter.silence_timeout_s
        try:
            while not self._stop.is_set():
                now = self._last_turn = self._clock()
                # Asked every time: a serial port finding its settings reads briefly.
                long_reads = interruptible and cast(Interruptible, source).interruptible
                timeout = longest if long_reads else self._read_timeout
                if self._watch_silence:  # wake when the silence timeout runs out
                    timeout = min(timeout, max(0.0, last_valid + silence_s - now))
                data = source.read(timeout)
                if data:
                    if self._handle(feed(data)):
                        last_valid = self._clock()
                    self._note_line_settings(source)
                if self._watch_silence and self._clock() - last_valid >= silence_s:
                    self._note_silence(source)
                    raise _Silent
        except EndOfData:
            self._handle(stream.flush_framed() if self._keeps_frames else stream.flush())
            raise

    def _handle(self, events: Iterable[_Event]) -> bool:
        """Count drops, pass readings on; True when at least one reading was accepted."""
        accepted = False
        for event in events:
            if isinstance(event, Dropped):
                self.stats.count_dropped(event.reason.value)
                log.debug("meter %s: dropped %s", self.name, event.describe())
            elif isinstance(event, tuple):
                self._accept(event[0], event[1])
                accepted = True
            else:
                self._accept(event)
                accepted = True
        if accepted:
            self._last_error = None
        if accepted and self._silent:
            self._silent = False
            self.stats.set_state("reading", connected=True)
            log.info("meter %s: telegrams are arriving again", self.name)
        return accepted

    def _accept(self, reading: Reading, frame: Frame | None = None) -> None:
        received_at = datetime.now(UTC)
        replaced = False
        equipment_id = reading.equipment_id
        if equipment_id is not None and equipment_id != self._equipment_id:
            if self._equipment_id is not None:
                replaced = True
                log.warning(
                    "meter %s: equipment id changed from %s to %s (meter replaced?)",
                    self.name,
                    self._equipment_id,
                    equipment_id,
                )
            self._equipment_id = equipment_id
            # Only on a change: the stats lock need not be taken for every telegram.
            self.stats.set_identity(equipment_id=equipment_id, line_settings=None)
        meter_reading = MeterReading.from_reading(
            reading,
            meter=self.meter.name,
            role=self.meter.role,
            ean=self.meter.ean,
            received_at=received_at,
            meter_replaced=replaced,
        )
        if frame is None:
            self._sink.submit(meter_reading)
        elif self._served:
            self._sink.submit(meter_reading, wire_bytes(frame))
        else:
            self._sink.submit(meter_reading, frame)
        self.stats.count_accepted(received_at)

    def _note_line_settings(self, source: ByteSource) -> None:
        line = source.line_settings
        if line is not None and line != self._logged_line:
            self._logged_line = line
            self.stats.set_identity(equipment_id=None, line_settings=line)
            log.info("meter %s: %s talks %s", self.name, source.description, line)

    def _note_silence(self, source: ByteSource) -> None:
        self.stats.count_silence()
        self.stats.set_state("silent", connected=True)
        if self._silent:
            log.debug("meter %s: still silent, reopening %s", self.name, source.description)
            return
        self._silent = True
        log.warning(
            "meter %s: no valid telegram for %g s from %s; reopening it",
            self.name,
            self.meter.silence_timeout_s,
            source.description,
        )
