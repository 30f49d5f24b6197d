"""What a meter reader needs from wherever the bytes come from.

A source only moves bytes; it knows nothing about telegrams. It reports trouble with two
exceptions, because a reader treats them completely differently: `SourceUnavailable`
means "retry with backoff, the port may come back", `EndOfData` means "this capture is
played, stop cleanly".
"""

from __future__ import annotations

from typing import Protocol


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
