"""`EnergyProcessor`: the energy views as a processor of the daemon's dispatcher.

It wraps the `EnergyTracker` (quarter, day, site connection, export alert) and owns what
the tracker must not do itself: the running day of each meter, saved to
`<state folder>/<meter>-day.json` (atomically: after every closed quarter-hour, and at
stop as booked up to the last reading) and restored at `start`, so that a restart
continues the day instead of starting it over. The saving is done by a thread of its own,
never by a reader thread or under the dispatcher's lock; a failure is logged once and
retried a minute later (the day document is also on the broker).

Quarter and day documents and export alerts are records; the connection document is
retained state, refreshed by readings and, when they stop, by the tick (so a silent
meter shows up as stale).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from p1daemon.daemon.processor import Document, InputEvent
from p1daemon.reading.meter import MeterReading
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.energy.tracker import EnergyTracker, MeterSpec, Outgoing

if TYPE_CHECKING:
    from p1daemon.config.model import Config

log = logging.getLogger("p1daemon.energy")

STATE_FOLDER = "energy"  # beside the outbox: the saved running day of each meter
_STATE_RETRY_S = 60.0


def meter_specs(config: Config) -> list[MeterSpec]:
    return [
        MeterSpec(m.name, m.role, m.ean, m.export_limit_kw, m.export_limit_hold_s)
        for m in config.meters
    ]


def state_folder(config: Config) -> Path:
    return Path(config.buffer.path).parent / STATE_FOLDER


def _document(message: Outgoing) -> Document:
    return Document(message.topic, message.payload, message.durable)


def _documents(messages: Sequence[Outgoing]) -> list[Document]:
    return [Document(m.topic, m.payload, m.durable) for m in messages]


class EnergyProcessor:
    """See the module docstring. `state_dir=None`: nothing saved or restored (`--stdout`)."""

    name = "energy"
    label = "the energy views"

    def __init__(self, tracker: EnergyTracker, state_dir: Path | None) -> None:
        self.tracker = tracker
        self.state_dir = state_dir
        self._lock = threading.Lock()  # _unsaved, shared with the saver thread
        self._unsaved: dict[str, bytes] = {}
        self._failed_at: dict[str, float] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._saver: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: Config, *, persist: bool = True) -> EnergyProcessor:
        tracker = EnergyTracker(config.site, meter_specs(config), config.mqtt.topic_prefix)
        return cls(tracker, state_folder(config) if persist else None)

    # -- the processor protocol ----------------------------------------------------------

    def start(self) -> Sequence[Document]:
        if self.state_dir is not None:
            for meter in self.tracker.meter_names:
                self._restore(meter)
            self._saver = threading.Thread(target=self._save_loop, name="energy-saver", daemon=True)
            self._saver.start()
        return _documents(self.tracker.initial())

    def on_reading(self, reading: MeterReading, now: datetime) -> Sequence[Document]:
        messages = self.tracker.on_reading(reading, now=now)
        if not messages:
            return ()
        if self.state_dir is not None:
            day_topic = self.tracker.topics.day(reading.meter)
            for message in messages:
                if message.topic == day_topic:
                    with self._lock:
                        self._unsaved[reading.meter] = message.payload
                    self._wake.set()
        return _documents(messages)

    def on_tick(self, now: datetime) -> Sequence[Document]:
        message = self.tracker.connection_due(now)
        return () if message is None else (_document(message),)

    def tick_due(self, now: datetime) -> float:
        """`TicksWhenDue`: the tick's only work is the connection document, when none
        went out for `connection_interval_s` (readings refresh it while they come)."""
        return self.tracker.connection_wait(now)

    def on_event(self, event: InputEvent) -> Sequence[Document]:
        return ()

    def on_reload(self, config: Config) -> Sequence[Document] | None:
        """Meters added, removed or changed, a new `[site]`: applied in place. A meter
        whose settings are unchanged keeps its running quarter; one that starts over
        continues its day. A new topic prefix needs a rebuild (None)."""
        if config.mqtt.topic_prefix != self.tracker.topics.prefix:
            return None
        site: SiteSettings = config.site
        running = self.tracker.running_days()
        fresh = self.tracker.reconfigure(site, meter_specs(config))
        for meter in fresh:
            saved = running.get(meter)
            if saved is None or not self.tracker.restore(meter, saved):
                self._restore(meter)
        out = _documents(self.tracker.initial(fresh))
        out.append(_document(self.tracker.connection(datetime.now(UTC))))
        return out

    def stop(self) -> Sequence[Document]:
        """Save each day as booked up to the last reading (not only to the last quarter)."""
        saver = self._saver
        if saver is None:
            return ()
        self._stopping.set()
        self._wake.set()
        saver.join(2.0)
        # A saver stuck on a slow card must not share its temporary file with this save.
        suffix = ".tmp" if not saver.is_alive() else ".stop.tmp"
        try:
            running = self.tracker.running_days()
            with self._lock:
                self._unsaved.update(running)
            self._save(force=True, suffix=suffix)
            self._save_openings(suffix)
        except Exception:  # never in the way of the outbox and the `offline` message
            log.exception("could not save the running days of the energy views")
        return ()

    def _opening_path(self, meter: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / f"{meter}-quarter.json"

    def _save_openings(self, suffix: str) -> None:
        """At a clean stop: each running quarter's opening reading, so a restart inside
        the same quarter publishes it whole (as the history books it), not as partial.
        Read once at the next start and removed, so a stale one never applies later."""
        for meter, payload in self.tracker.quarter_openings().items():
            path = self._opening_path(meter)
            temporary = path.with_name(path.name + suffix)
            try:
                with temporary.open("wb") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            except OSError as exc:
                log.warning("meter %s: cannot save the running quarter to %s: %s", meter, path, exc)

    def _take_opening(self, meter: str) -> bytes | None:
        path = self._opening_path(meter)
        try:
            saved = path.read_bytes()
            path.unlink()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("meter %s: cannot read the saved quarter %s: %s", meter, path, exc)
            return None
        return saved

    # -- the saved days ------------------------------------------------------------------

    def _path(self, meter: str) -> Path:
        assert self.state_dir is not None
        return self.state_dir / f"{meter}-day.json"

    def _restore(self, meter: str) -> None:
        """Continue `meter`'s day from its saved document (before any reading of it)."""
        if self.state_dir is None:
            return
        path = self._path(meter)
        try:
            saved = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("meter %s: cannot read the saved day %s: %s", meter, path, exc)
            return
        if self.tracker.restore(meter, saved, self._take_opening(meter)):
            log.info("meter %s: the day view continues from %s", meter, path)
        else:
            log.info("meter %s: the saved day in %s does not fit; not used", meter, path)

    def _save_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._save()
            except Exception:  # a bug must not end the saving
                log.exception("saving the running days failed; retrying")
            self._wake.wait(_STATE_RETRY_S if self._failed_at else None)
            self._wake.clear()

    def _save(self, *, force: bool = False, suffix: str = ".tmp") -> None:
        """Write each meter's newest running-day document, atomically (temp + rename).

        About once a quarter-hour per meter, so the SD card hardly notices."""
        with self._lock:
            if not self._unsaved:
                return
            todo = dict(self._unsaved)
        now = time.monotonic()
        for meter, payload in todo.items():
            failed_at = self._failed_at.get(meter)
            if not force and failed_at is not None and now - failed_at < _STATE_RETRY_S:
                continue
            path = self._path(meter)
            temporary = path.with_name(path.name + suffix)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with temporary.open("wb") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            except OSError as exc:
                if failed_at is None:
                    log.warning(
                        "meter %s: cannot save the running day to %s: %s (retrying; a "
                        "restart meanwhile starts the day view over)",
                        meter,
                        path,
                        exc,
                    )
                self._failed_at[meter] = now
                continue
            if failed_at is not None:
                log.info("meter %s: the running day is saved to %s again", meter, path)
                del self._failed_at[meter]
            with self._lock:
                if self._unsaved.get(meter) is payload:
                    del self._unsaved[meter]
