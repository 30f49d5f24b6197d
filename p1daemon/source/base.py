"""What a meter reader needs from wherever the bytes come from.

A source only moves bytes; it knows nothing about telegrams. It reports trouble with two
exceptions, because a reader treats them completely differently: `SourceUnavailable`
means "retry with backoff, the port may come back", `EndOfData` means "this capture is
played, stop cleanly".
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class SourceUnavailable(Exception):
    """The port cannot be opened or has gone away; the message is one line for the log."""


class EndOfData(Exception):
    """A finite source (a non-looping replay) has delivered everything it had."""


class ByteSource(Protocol):
    @property
    def description(self) -> str:
        """Where the bytes come from, for log lines ("/dev/ttyUSB0", "socket://...")."""
        ...

    @property
    def line_settings(self) -> str | None:
        """Serial settings in use once known ("115200 8N1"); None where they do not apply."""
        ...

    def open(self) -> None:
        """Connect; raises `SourceUnavailable`. Called again after `close` to reconnect."""
        ...

    def read(self, timeout: float) -> bytes:
        """Bytes as they arrive, b"" when nothing came within `timeout` seconds.

        Raises `SourceUnavailable` when the port is gone, `EndOfData` at the end of a
        finite source. Must return within about `timeout` so a reader can be stopped.
        """
        ...

    def close(self) -> None:
        """Release the port; safe to call twice and never raises."""
        ...


@runtime_checkable
class Interruptible(Protocol):
    """A source whose waiting `read` another thread can cut short. A reader then waits
    for bytes for seconds at a time (an idle meter costs no wake-ups every quarter
    second) and still stops at once: `request_stop` interrupts the read."""

    @property
    def interruptible(self) -> bool:
        """Whether `interrupt` works for the source as it is open now (a port type
        without a way to cut a read short says False: its reads must stay short)."""
        ...

    def interrupt(self) -> None:
        """From any thread, for good (the reader is stopping): the `read` waiting now,
        and every later one, returns b"" at once."""
        ...
