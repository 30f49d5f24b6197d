"""Logging: journald format, one line per event, rate limiting, redaction.

Journald detection is exercised the way systemd does it: JOURNAL_STREAM holds the device
and inode of the process's stderr, here a real file whose identity the test reads.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import pytest
from test_daemon_support import CollectingSink, telegram

from p1daemon.config import load_config
from p1daemon.daemon.app import Daemon
from p1daemon.service.logsetup import (
    MAX_LINE_CHARS,
    LineFormatter,
    LogSetup,
    parse_level,
    setup_logging,
    syslog_priority,
)
from p1daemon.service.ratelimit import ALWAYS_LOG, RateLimitFilter
from p1daemon.service.redact import Redactor

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = sys.excepthook, threading.excepthook
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)


@pytest.fixture
def stderr_file(tmp_path: Path) -> Iterator[TextIO]:
    with open(tmp_path / "stderr", "w+", encoding="utf-8") as handle:
        yield handle


def journal_env(stream: TextIO) -> dict[str, str]:
    st = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def lines_of(stream: TextIO) -> list[str]:
    stream.flush()
    stream.seek(0)
    return stream.read().splitlines()


def journal_setup(stream: TextIO, level: str = "info", secrets: Iterable[str] = ()) -> LogSetup:
    setup = setup_logging(
        level, stream=stream, environ=journal_env(stream), secrets=secrets, fault_dumps=False
    )
    assert setup.journal
    return setup


def test_priorities() -> None:
    assert [
        syslog_priority(level)
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
    ] == [7, 6, 4, 3]
    assert syslog_priority(logging.CRITICAL) == 2


def test_journal_lines_carry_priority_and_no_timestamp(stderr_file: TextIO) -> None:
    journal_setup(stderr_file, "debug")
    log = logging.getLogger("p1daemon.source.serial")
    log.debug("opening %s", "/dev/ttyUSB0")
    log.info("meter house: connected")
    log.warning("meter house: port gone")
    log.error("outbox: disk full")
    assert lines_of(stderr_file) == [
        "<7>source.serial: opening /dev/ttyUSB0",
        "<6>source.serial: meter house: connected",
        "<4>source.serial: meter house: port gone",
        "<3>source.serial: outbox: disk full",
    ]


def test_terminal_lines_are_timestamped_without_prefix(stderr_file: TextIO) -> None:
    setup = setup_logging("info", stream=stderr_file, environ={}, fault_dumps=False)
    assert not setup.journal
    logging.getLogger("p1daemon.daemon").warning("meter house: silent for 30 s")
    [line] = lines_of(stderr_file)
    assert TIMESTAMP.match(line)
    assert line.endswith(" WARNING daemon: meter house: silent for 30 s")


@pytest.mark.parametrize("value", ["1:2", "garbage", "", ":"])
def test_journal_stream_must_be_this_very_stream(stderr_file: TextIO, value: str) -> None:
    """A child with redirected stderr inherits JOURNAL_STREAM but is not writing to journald."""
    setup = setup_logging(
        "info", stream=stderr_file, environ={"JOURNAL_STREAM": value}, fault_dumps=False
    )
    assert not setup.journal


def test_level_filters_and_can_change(stderr_file: TextIO) -> None:
    setup = journal_setup(stderr_file, "warning")
    log = logging.getLogger("p1daemon.x")
    log.info("hidden")
    log.warning("shown")
    setup.set_level("debug")
    log.debug("now shown")
    assert lines_of(stderr_file) == ["<4>x: shown", "<7>x: now shown"]


def test_parse_level() -> None:
    assert parse_level("DEBUG") == logging.DEBUG
    assert parse_level(logging.ERROR) == logging.ERROR
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        parse_level("loud")


def test_one_line_per_event(stderr_file: TextIO) -> None:
    journal_setup(stderr_file)
    logging.getLogger("p1daemon").warning("first\nsecond\r\nthird\x1b[31m\ttab")
    assert lines_of(stderr_file) == ["<4>p1daemon: first\\nsecond\\r\\nthird\\x1b[31m\ttab"]


def test_exception_at_info_is_summarised_without_traceback(stderr_file: TextIO) -> None:
    journal_setup(stderr_file)
    try:
        raise ValueError("bad byte 0x7f")
    except ValueError:
        logging.getLogger("p1daemon.source").exception("meter house: reader failed")
    assert lines_of(stderr_file) == [
        "<3>source: meter house: reader failed (ValueError: bad byte 0x7f)"
    ]


def test_exception_at_debug_keeps_the_traceback_on_the_same_line(stderr_file: TextIO) -> None:
    journal_setup(stderr_file, "debug")
    try:
        raise ValueError("bad byte")
    except ValueError:
        logging.getLogger("p1daemon.source").exception("reader failed")
    [line] = lines_of(stderr_file)
    assert line.startswith("<3>source: reader failed\\nTraceback (most recent call last):\\n")
    assert line.endswith("ValueError: bad byte")


def test_huge_message_is_capped(stderr_file: TextIO) -> None:
    journal_setup(stderr_file)
    logging.getLogger("p1daemon").warning("garbage: %s", "x" * 100_000)
    [line] = lines_of(stderr_file)
    assert len(line) < MAX_LINE_CHARS + 100
    assert line.endswith(f"... ({100_000 + len('garbage: ') - MAX_LINE_CHARS} more chars)")


def test_wrong_logging_arguments_still_give_one_line(stderr_file: TextIO) -> None:
    setup = journal_setup(stderr_file)
    # A private logger: pytest's own capture handler on the root would raise on this call.
    log = logging.getLogger("p1daemon-private")
    log.handlers, log.propagate = [setup.handler], False
    log.error("expects two %s %s", "args")
    assert lines_of(stderr_file) == [
        "<3>p1daemon-private: 'expects two %s %s' (bad log arguments: TypeError)"
    ]


def test_setting_up_twice_does_not_double_lines(stderr_file: TextIO) -> None:
    journal_setup(stderr_file)
    journal_setup(stderr_file)
    logging.getLogger("p1daemon").info("once")
    assert lines_of(stderr_file) == ["<6>p1daemon: once"]


def test_warnings_become_log_lines(stderr_file: TextIO) -> None:
    journal_setup(stderr_file)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old option", DeprecationWarning, stacklevel=1)
    [line] = lines_of(stderr_file)
    assert line.startswith("<4>py.warnings: ")
    assert "DeprecationWarning: old option" in line


def test_uncaught_exception_is_one_critical_line(stderr_file: TextIO) -> None:
    journal_setup(stderr_file)
    try:
        raise KeyError("meters")
    except KeyError as exc:
        sys.excepthook(KeyError, exc, exc.__traceback__)
    assert lines_of(stderr_file) == [
        "<2>p1daemon: unexpected error, exiting (--log-level debug shows the traceback) "
        "(KeyError: 'meters')"
    ]


def test_uncaught_exception_in_a_thread_is_one_line(stderr_file: TextIO) -> None:
    journal_setup(stderr_file)

    def crash() -> None:
        raise RuntimeError("reader died")

    thread = threading.Thread(target=crash, name="reader-house")
    thread.start()
    thread.join()
    assert lines_of(stderr_file) == [
        "<2>p1daemon: unexpected error in thread reader-house "
        "(--log-level debug shows the traceback) (RuntimeError: reader died)"
    ]


# --- rate limiting ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def limited_logger(stream: TextIO, clock: Clock, name: str = "p1daemon.source") -> logging.Logger:
    """A private logger with the production formatter and filter and an injected clock."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LineFormatter(journal=True, redactor=Redactor(), tracebacks=False))
    handler.addFilter(RateLimitFilter(60.0, clock))
    log = logging.getLogger(f"test-ratelimit.{name}")
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def test_identical_messages_at_most_once_a_minute(stderr_file: TextIO) -> None:
    clock = Clock()
    log = limited_logger(stderr_file, clock)
    for _ in range(1000):  # a loose cable, ten times a second for 100 s
        log.warning("meter house: CRC mismatch")
        clock.now += 0.1
    assert lines_of(stderr_file) == [
        "<4>test-ratelimit.p1daemon.source: meter house: CRC mismatch",
        "<4>test-ratelimit.p1daemon.source: meter house: CRC mismatch (599 suppressed)",
    ]


def test_one_meter_never_hides_another(stderr_file: TextIO) -> None:
    clock = Clock()
    log = limited_logger(stderr_file, clock)
    for _ in range(5):
        log.warning("meter %s: port gone", "house")
        log.warning("meter %s: port gone", "carport")
        log.error("meter %s: port gone", "house")  # another level is another message
    assert len(lines_of(stderr_file)) == 3


def test_rate_key_groups_varying_messages(stderr_file: TextIO) -> None:
    clock = Clock()
    log = limited_logger(stderr_file, clock)
    for offset in range(50):
        log.warning("garbage at byte %d", offset, extra={"rate_key": "house-garbage"})
    clock.now = 61
    log.warning("garbage at byte %d", 99, extra={"rate_key": "house-garbage"})
    assert [line.split(": ", 1)[1] for line in lines_of(stderr_file)] == [
        "garbage at byte 0",
        "garbage at byte 99 (49 suppressed)",
    ]


def test_debug_is_never_rate_limited(stderr_file: TextIO) -> None:
    log = limited_logger(stderr_file, Clock())
    for _ in range(10):
        log.debug("frame")
    assert len(lines_of(stderr_file)) == 10


def test_rate_limiter_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimitFilter(60.0, clock)
    for n in range(10_000):
        record = logging.LogRecord("p1daemon", logging.WARNING, __file__, 1, "m%d", (n,), None)
        assert limiter.filter(record)
    assert len(limiter._entries) <= 2048


def test_rate_limiting_is_wired_into_setup(stderr_file: TextIO) -> None:
    journal_setup(stderr_file)
    for _ in range(100):
        logging.getLogger("p1daemon.source").error("meter house: cannot open /dev/ttyUSB0")
    assert len(lines_of(stderr_file)) == 1


def test_always_log_records_are_never_held_back(stderr_file: TextIO) -> None:
    """A reload's outcome is an answer the user is waiting for, however often they ask."""
    clock = Clock()
    log = limited_logger(stderr_file, clock)
    for _ in range(3):
        log.error("reload refused: bad file", extra=ALWAYS_LOG)
        log.warning("meter house: CRC mismatch")
        clock.now += 1
    assert [line.split(": ", 1)[1] for line in lines_of(stderr_file)] == [
        "reload refused: bad file",
        "meter house: CRC mismatch",
        "reload refused: bad file",
        "reload refused: bad file",
    ]


RELOAD_GOOD = """
[[meters]]
name = "house"
source = "replay:{capture}"
"""


def test_every_reload_outcome_reaches_the_journal(stderr_file: TextIO, tmp_path: Path) -> None:
    """Two refused reloads in a row, then two good ones: each says how it ended."""
    journal_setup(stderr_file)
    capture = tmp_path / "house.txt"
    capture.write_bytes(telegram(1))
    path = tmp_path / "p1daemon.toml"
    path.write_text(RELOAD_GOOD.format(capture=capture))
    daemon = Daemon(load_config(path, {}), CollectingSink(), reload=lambda: load_config(path, {}))

    path.write_text("[[meters]]\nname = 'House!'\n")
    assert daemon.reload() is False
    assert daemon.reload() is False
    path.write_text(RELOAD_GOOD.format(capture=capture))
    assert daemon.reload() is True
    assert daemon.reload() is True

    lines = lines_of(stderr_file)
    assert (
        lines.count("<3>daemon.app: reload refused: the previous configuration keeps running") == 2
    )
    assert sum("reload refused: " + str(path) in line for line in lines) >= 2
    assert lines.count("<6>daemon.app: configuration reloaded: 1 meter(s)") == 2


# --- redaction -------------------------------------------------------------------------


def test_secrets_never_reach_the_log(stderr_file: TextIO) -> None:
    password = "s3cr#t/pa ss"
    key = "0123456789ABCDEF0123456789ABCDEF"
    setup = journal_setup(stderr_file, secrets=[password, key, ""])
    log = logging.getLogger("p1daemon.publish")
    log.info("connecting with password %s", password)
    log.info("url mqtt://user:%s@broker", "s3cr%23t%2Fpa%20ss")
    log.info("smarty key %s", key.lower())
    try:
        raise ConnectionError(f"auth failed for {password!r}")
    except ConnectionError:
        log.exception("broker refused")
    setup.set_secrets(["new-password"])  # a reload changed the password
    log.info("now %s", "new-password")
    text = "\n".join(lines_of(stderr_file))
    assert password not in text
    assert "s3cr%23t" not in text
    assert key.lower() not in text
    assert "new-password" not in text
    assert lines_of(stderr_file) == [
        "<6>publish: connecting with password ***",
        "<6>publish: url mqtt://user:***@broker",
        "<6>publish: smarty key ***",
        "<3>publish: broker refused (ConnectionError: auth failed for '***')",
        "<6>publish: now ***",
    ]


def test_redaction_covers_debug_tracebacks(stderr_file: TextIO) -> None:
    journal_setup(stderr_file, "debug", secrets=["hunter2"])
    secret = "hunter2"
    try:
        raise RuntimeError(secret)
    except RuntimeError:
        logging.getLogger("p1daemon").debug("failed", exc_info=True)
    [line] = lines_of(stderr_file)
    assert "Traceback" in line
    assert "hunter2" not in line


# --- post-mortem -----------------------------------------------------------------------


def test_watchdog_abort_dumps_every_thread_stack() -> None:
    """systemd's watchdog kills with SIGABRT; the stack dump shows where the loop hung."""
    code = textwrap.dedent(
        """
        import threading, time
        from p1daemon.service.logsetup import setup_logging
        setup_logging("info")
        threading.Thread(target=time.sleep, args=(60,), name="reader", daemon=True).start()
        def stuck_main_loop():
            # "ready" from inside the loop's own frame: the abort cannot come before it.
            print("ready", flush=True)
            time.sleep(60)
        stuck_main_loop()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGABRT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGABRT
    assert "Fatal Python error: Aborted" in err
    assert "stuck_main_loop" in err
    assert "Current thread 0x" in err  # the main loop
    assert err.count("Thread 0x") >= 1  # and the reader
