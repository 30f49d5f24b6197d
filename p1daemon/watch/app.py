"""The loops behind `p1daemon watch`: once, on a terminal, or into a pipe.

Messages are decoded on paho's thread as they arrive (a few a second per meter: the
view never subscribes to `reading`); the main thread only draws, at most once a second.
`--once` waits until the broker has delivered the retained documents (no new retained
message for a short quiet spell after the subscription is confirmed), prints the view
and says with its exit status whether any site has a problem.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import TextIO

from p1daemon.publish.settings import MqttSettings
from p1daemon.watch.connect import Watcher
from p1daemon.watch.layout import assess_fleet, frame, plain, records
from p1daemon.watch.rules import Limits
from p1daemon.watch.screen import Screen, fit
from p1daemon.watch.state import Fleet
from p1daemon.watch.topics import TopicParser

_QUIET_S = 0.3  # no retained message for this long: the broker has sent them all
_SETTLE_MAX_S = 5.0
_FRAME_S = 1.0

OK, PROBLEM = 0, 1


@dataclass(frozen=True, slots=True)
class WatchOptions:
    prefixes: tuple[str, ...]
    limits: Limits
    once: bool = False


class _Feed:
    """The fleet, fed from paho's thread, read from the main thread (hence the lock)."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self.fleet = Fleet()
        self.lock = threading.Lock()
        self._parser = TopicParser(prefixes)
        self.last_retained = time.monotonic()

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        parsed = self._parser.parse(topic)
        if parsed is None:
            return
        with self.lock:
            self.fleet.feed(parsed, payload, datetime.now(UTC))
        if retained:
            self.last_retained = time.monotonic()

    def settle(self, watcher: Watcher) -> None:
        """Wait for the retained documents the subscription brought."""
        start = time.monotonic()
        while time.monotonic() - start < _SETTLE_MAX_S:
            quiet_since = max(self.last_retained, watcher.subscribed_at)
            if time.monotonic() - quiet_since >= _QUIET_S:
                return
            time.sleep(0.05)


def run(settings: MqttSettings, options: WatchOptions, out: TextIO, *, tty: bool) -> int:
    """Watch until stopped (or once); raises connect.WatchError when there is no broker."""
    feed = _Feed(options.prefixes)
    watcher = Watcher(settings, options.prefixes, feed.on_message)
    stop = threading.Event()
    if not options.once:
        _stop_on_signals(stop)  # Ctrl-C and SIGTERM end watching (status 0)
    watcher.connect()
    try:
        feed.settle(watcher)
        if options.once:
            return _once(feed, watcher, options, out, tty=tty)
        if tty:
            _terminal(feed, watcher, options, out, stop)
        else:
            _pipe(feed, watcher, options, out, stop)
        return OK
    finally:
        watcher.stop()


def raw_command(watcher: Watcher, prefixes: tuple[str, ...]) -> str:
    """The `mosquitto_sub` line that shows the same sites' messages as they are."""
    s = watcher.settings
    where = "" if (s.host, s.port) == ("127.0.0.1", 1883) else f"-h {s.host} -p {s.port} "
    topics = " ".join(f"-t '{prefix}/#'" for prefix in prefixes)
    return f"mosquitto_sub {where}-v {topics}"


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _once(feed: _Feed, watcher: Watcher, options: WatchOptions, out: TextIO, *, tty: bool) -> int:
    now = datetime.now(UTC)
    with feed.lock:
        rows = assess_fleet(feed.fleet, now, options.limits)
        lines = frame(rows, now, options.limits, where=watcher.where)
    try:
        for line in lines:
            out.write((fit(line, None, color=True) if tty else plain(line)) + "\n")
        out.flush()
    except BrokenPipeError:
        _reader_gone(out)
    return PROBLEM if not rows or any(row.problem for row in rows) else OK


def _reader_gone(out: TextIO) -> None:
    """`watch | head`: the reader went away. Not an error; and the interpreter's last
    flush of stdout must not complain about it either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    except (OSError, ValueError):
        pass


def _terminal(
    feed: _Feed, watcher: Watcher, options: WatchOptions, out: TextIO, stop: threading.Event
) -> None:
    screen = Screen(out)
    footer = f"raw messages: {raw_command(watcher, options.prefixes)}   (Ctrl-C stops)"
    screen.open()
    try:
        while not stop.is_set():
            started = time.monotonic()
            now = datetime.now(UTC)
            with feed.lock:
                rows = assess_fleet(feed.fleet, now, options.limits)
                lines = frame(
                    rows,
                    now,
                    options.limits,
                    where=watcher.where,
                    broker_problem=None if watcher.connected else watcher.problem or "down",
                    footer=footer,
                )
            screen.draw(lines)
            stop.wait(max(0.0, started + _FRAME_S - time.monotonic()))  # at most 1 a second
    finally:
        screen.close()


def _pipe(
    feed: _Feed, watcher: Watcher, options: WatchOptions, out: TextIO, stop: threading.Event
) -> None:
    printed: dict[str, str] = {}
    try:
        while not stop.is_set():
            started = time.monotonic()
            now = datetime.now(UTC)
            with feed.lock:
                current = records(assess_fleet(feed.fleet, now, options.limits))
            broker = "connected" if watcher.connected else f"NOT connected: {watcher.problem}"
            current["broker"] = f"broker {watcher.where} {broker}"
            stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")
            changed = [
                f"{stamp} {text}" for key, text in current.items() if printed.get(key) != text
            ]
            # A record starts with what it describes ("p1/house meter ..."): so does its end.
            changed += [
                f"{stamp} {' '.join(text.split(' ')[:2])} gone"
                for key, text in printed.items()
                if key not in current
            ]
            if changed:
                out.write("\n".join(changed) + "\n")
                out.flush()
            printed = current
            stop.wait(max(0.0, started + _FRAME_S - time.monotonic()))
    except BrokenPipeError:
        _reader_gone(out)  # that ends watching, quietly
