"""A small terminal model for the `watch` tests: the screen a byte stream leaves behind.

It understands exactly the control sequences a well-behaved full-screen view needs
(cursor home or row;col, erase line, erase below, clear, SGR, private modes) and fails
loudly on anything written past the right edge (the terminal would wrap it) or a line
feed on the last row (the terminal would scroll): the two ways a redraw in place goes
wrong. Unknown sequences are failures too, so the model cannot silently pass garbage.
"""

from __future__ import annotations

import re

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


class ScreenModel:
    def __init__(self, columns: int, rows: int) -> None:
        self.columns = columns
        self.rows = rows
        self.cells = [[" "] * columns for _ in range(rows)]
        self.row = 0
        self.col = 0
        self.frames = 0  # cursor-home sequences seen: one per redraw
        self.problems: list[str] = []

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            char = text[i]
            if char == "\x1b":
                match = _CSI.match(text, i)
                if match is None:
                    self.problems.append(f"unknown escape at {text[i : i + 8]!r}")
                    i += 1
                    continue
                self._csi(match.group(1), match.group(2))
                i = match.end()
                continue
            if char == "\r":
                self.col = 0
            elif char == "\n":
                if self.row == self.rows - 1:
                    self.problems.append("line feed on the last row: the screen would scroll")
                else:
                    self.row += 1
            elif char < " ":
                self.problems.append(f"control character {char!r}")
            else:
                if self.col >= self.columns:
                    self.problems.append(
                        f"wrote {char!r} past column {self.columns} on row {self.row}"
                    )
                else:
                    self.cells[self.row][self.col] = char
                    self.col += 1
            i += 1

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?") and final in "hl":
            return  # alternate screen, cursor visibility
        if final == "m":
            return
        if final == "H":
            parts = [int(p) if p else 1 for p in params.split(";")] if params else [1, 1]
            self.row, self.col = parts[0] - 1, (parts[1] - 1 if len(parts) > 1 else 0)
            if not params:
                self.frames += 1
        elif final == "K" and params in ("", "0"):
            for c in range(self.col, self.columns):
                self.cells[self.row][c] = " "
        elif final == "J" and params in ("", "0"):
            for c in range(self.col, self.columns):
                self.cells[self.row][c] = " "
            for r in range(self.row + 1, self.rows):
                self.cells[r] = [" "] * self.columns
        elif final == "J" and params == "2":
            self.cells = [[" "] * self.columns for _ in range(self.rows)]
        else:
            self.problems.append(f"unexpected sequence ESC[{params}{final}")

    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.cells]
