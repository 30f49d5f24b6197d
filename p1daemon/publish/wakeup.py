"""`Wakeup`: a threading.Event-like flag that a `poll()` can wait on beside a socket.

The publisher's worker sleeps in `poll()` on the broker's socket (it does paho's network
I/O itself, `client.BrokerLink.wait`), so a reader with a new reading must be able to
end that sleep: it writes a byte to a pipe whose other end is in the poll. The flag in
front of the pipe makes every wake-up after the first one of a round free (no system
call), as `Event.set` on an already set event was.

Order of the worker's side (`consume`): empty the pipe first, then lower the flag. A
producer that saw the flag still up did its work before the flag went down, so the
round that follows sees that work; one that saw it down writes a byte, which at worst
wakes the next poll for nothing.
"""

from __future__ import annotations

import contextlib
import os


class Wakeup:
    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._flag = False

    def fileno(self) -> int:
        """The end to poll for reading."""
        return self._read_fd

    def set(self) -> None:
        """Wake the worker (any thread); nothing to do if it is woken already."""
        if self._flag:
            return
        self._flag = True
        try:
            os.write(self._write_fd, b"\0")
        except BlockingIOError:
            return  # the pipe is full of wake-ups the worker has not read yet

    def consume(self, readable: bool) -> None:
        """The worker is awake: take the wake-ups (`readable`: the poll saw the pipe ready)."""
        if readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._read_fd, 512)
        self._flag = False

    def __del__(self) -> None:
        # Closed only when nothing can call `set` any more: a descriptor closed while a
        # producer could still write to it might by then belong to another file.
        for fd in (getattr(self, "_read_fd", -1), getattr(self, "_write_fd", -1)):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
