"""Drawing lines on a terminal in place: plain ANSI, one write per frame.

Each frame moves the cursor home and rewrites every line, erasing the rest of each line
(`ESC[K`) and everything below the last one (`ESC[J`): a line that got shorter, or a
block that went away, leaves nothing behind, and nothing is cleared first, so the
screen never flashes blank. Lines are cut one column short of the width (a character
in the last column leaves some terminals in a pending wrap, where `ESC[K` would eat
it), and a frame taller than the terminal is cut with a "more" line instead of
scrolling, which would break the redraw in place. The alternate screen keeps the
user's scrollback as it was once watching ends.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import TextIO

from p1daemon.watch.layout import Line

_STYLES = {
    "": "",
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "red": "\x1b[31m",
    "yellow": "\x1b[33m",
    "green": "\x1b[32m",
}
_RESET = "\x1b[0m"


def fit(line: Line, width: int | None, *, color: bool) -> str:
    """The line as text, at most `width` visible columns, styled when `color`."""
    out: list[str] = []
    room = width
    for text, style in line:
        if room is not None:
            if room <= 0:
                break
            text = text[:room]
            room -= len(text)
        if not text:
            continue
        code = _STYLES.get(style, "") if color else ""
        out.append(f"{code}{text}{_RESET}" if code else text)
    return "".join(out)


def terminal_size() -> tuple[int, int]:
    size = shutil.get_terminal_size((80, 24))
    return size.columns, size.lines


class Screen:
    def __init__(self, out: TextIO, *, size: Callable[[], tuple[int, int]] = terminal_size) -> None:
        self._out = out
        self._size = size
        self._last_size: tuple[int, int] | None = None
        self._open = False

    def open(self) -> None:
        # Alternate screen, cursor hidden, cleared once.
        self._out.write("\x1b[?1049h\x1b[?25l\x1b[2J\x1b[H")
        self._out.flush()
        self._open = True

    def draw(self, lines: list[Line]) -> None:
        columns, rows = self._size()
        columns, rows = max(columns, 2), max(rows, 2)
        parts = ["\x1b[H"]
        if (columns, rows) != self._last_size:
            # After a resize the terminal may have re-wrapped the old frame: start clean.
            parts.insert(0, "\x1b[2J")
            self._last_size = (columns, rows)
        room = rows - 1  # each line ends in CR LF; the last one must not scroll
        shown = lines
        if len(lines) > room:
            hidden = len(lines) - (room - 1)
            shown = [*lines[: room - 1], [(f"... {hidden} more lines (enlarge the window)", "dim")]]
        for line in shown:
            parts.append(fit(line, columns - 1, color=True))
            parts.append("\x1b[K\r\n")
        parts.append("\x1b[J")
        self._out.write("".join(parts))
        self._out.flush()

    def close(self) -> None:
        if self._open:
            self._out.write(f"{_RESET}\x1b[?25h\x1b[?1049l")
            self._out.flush()
            self._open = False
