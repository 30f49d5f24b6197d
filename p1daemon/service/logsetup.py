"""Logging for a daemon nobody watches: one line per event on stderr, journald-aware.

Under systemd, stderr goes to journald, which adds its own timestamp and reads a `<N>`
syslog priority prefix per line, so `journalctl -p warning -u p1daemon` finds the
problems. A multi-line traceback there would become several entries with the default
priority, so every event is exactly one line; tracebacks appear only at debug level
(escaped into that line), otherwise the exception is summarised in a few words.
From a terminal the same line gets a readable timestamp instead of the prefix.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Iterable, Mapping
from typing import TextIO

from p1daemon.service.ratelimit import DEFAULT_WINDOW_S, SUPPRESSED_ATTR, RateLimitFilter
from p1daemon.service.redact import Redactor

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# A flooding meter can put kilobytes of garbage into a message; the journal keeps a bounded,
# still recognisable start of it.
MAX_LINE_CHARS = 4096

_OWN_HANDLER_ATTR = "_p1daemon_handler"


def syslog_priority(levelno: int) -> int:
    """sd-daemon(3) priorities: 2 crit, 3 err, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def parse_level(level: str | int) -> int:
    """A level name from the command line (or a logging constant) as a logging constant."""
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r} (use one of: {', '.join(LEVELS)})") from None


def under_journald(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when `stream` is the journal stream systemd announced in JOURNAL_STREAM.

    systemd.exec(5) says to compare device and inode with the stream itself: a child
    whose stderr was redirected inherits the variable but does not write to the journal.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        expected = (int(device), int(inode))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == expected


_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(0x20), *range(0x7F, 0xA0)]}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\t"})


def one_line(text: str, max_chars: int = MAX_LINE_CHARS) -> str:
    """Escape line breaks and terminal control bytes (meters send garbage) and cap the length."""
    line = text.translate(_ESCAPES)
    if len(line) > max_chars:
        line = f"{line[:max_chars]}... ({len(line) - max_chars} more chars)"
    return line


class LineFormatter(logging.Formatter):
    """Renders a record as one redacted, escaped line, journald-style or timestamped."""

    def __init__(self, *, journal: bool, redactor: Redactor, tracebacks: bool) -> None:
        super().__init__()
        self.journal = journal
        self.redactor = redactor
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as exc:  # a logging call with wrong arguments must not be lost
            message = f"{record.msg!r} (bad log arguments: {type(exc).__name__})"
        if record.exc_info and record.exc_info[1] is not None:
            if self.tracebacks:
                message += "\n" + self.formatException(record.exc_info)
            else:
                message += f" ({_summary(record.exc_info[1])})"
        if record.stack_info and self.tracebacks:
            message += "\n" + self.formatStack(record.stack_info)
        suppressed = getattr(record, SUPPRESSED_ATTR, 0)
        if suppressed:
            message += f" ({suppressed} suppressed)"
        line = one_line(self.redactor(message))
        name = _short_name(record.name)
        if self.journal:
            return f"<{syslog_priority(record.levelno)}>{name}: {line}"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        millis = int(record.msecs)
        return f"{stamp}.{millis:03d} {record.levelname:<7} {name}: {line}"


def _summary(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # an exception whose message itself fails must still be reported
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _short_name(name: str) -> str:
    return name.removeprefix("p1daemon.") or name


class LogSetup:
    """The installed handler, so level and secrets can change on a config reload."""

    def __init__(
        self, handler: logging.Handler, formatter: LineFormatter, redactor: Redactor
    ) -> None:
        self.handler = handler
        self.formatter = formatter
        self.redactor = redactor

    @property
    def journal(self) -> bool:
        return self.formatter.journal

    def set_level(self, level: str | int) -> None:
        levelno = parse_level(level)
        logging.getLogger().setLevel(levelno)
        self.formatter.tracebacks = levelno <= logging.DEBUG

    def set_secrets(self, secrets: Iterable[str]) -> None:
        self.redactor.set_secrets(secrets)


def setup_logging(
    level: str | int = "info",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    rate_window_s: float = DEFAULT_WINDOW_S,
    fault_dumps: bool = True,
) -> LogSetup:
    """Route all logging (and uncaught exceptions, and warnings) to one stderr handler.

    Calling it again replaces the handler it installed before, so tests and a reload can
    set it up afresh without doubling every line.
    """
    out = sys.stderr if stream is None else stream
    redactor = Redactor(secrets)
    formatter = LineFormatter(
        journal=under_journald(out, environ), redactor=redactor, tracebacks=False
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(RateLimitFilter(rate_window_s))
    setattr(handler, _OWN_HANDLER_ATTR, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OWN_HANDLER_ATTR, False):
            root.removeHandler(old)
    root.addHandler(handler)
    setup = LogSetup(handler, formatter, redactor)
    setup.set_level(level)

    logging.captureWarnings(True)
    _route_uncaught_exceptions()
    if fault_dumps:
        _enable_fault_dumps(out)
    return setup


def _route_uncaught_exceptions() -> None:
    """A crash becomes one log line (traceback at debug) instead of a multi-line dump."""
    log = logging.getLogger("p1daemon")

    def excepthook(
        kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, exc, tb)
            return
        log.critical("unexpected error, exiting%s", _hint(), exc_info=(kind, exc, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or issubclass(args.exc_type, SystemExit):
            return
        name = args.thread.name if args.thread is not None else "?"
        log.critical(
            "unexpected error in thread %s%s",
            name,
            _hint(),
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def _hint() -> str:
    if logging.getLogger().getEffectiveLevel() <= logging.DEBUG:
        return ""
    return " (--log-level debug shows the traceback)"


def _enable_fault_dumps(stream: TextIO) -> None:
    """On SIGABRT (the watchdog's kill signal), SIGSEGV and friends, dump every thread's stack.

    That dump is the only evidence of where a hung daemon was stuck; it is multi-line,
    but it is a post-mortem, not an event.
    """
    with contextlib.suppress(ValueError, OSError, AttributeError):
        stream.fileno()
        faulthandler.enable(file=stream, all_threads=True)
