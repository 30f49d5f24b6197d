"""One object per meter that turns raw port bytes into checked telegrams.

Plain meters go straight to the framer; Smarty meters first pass through the
decryptor, whose plaintext then gets exactly the same framing and CRC rules.
"""

from __future__ import annotations

from p1daemon.frame.events import Dropped, Frame
from p1daemon.frame.framer import DEFAULT_MAX_FRAME, CrcMemory, Framer
from p1daemon.frame.smarty import SMARTY_AUTH_KEY, SmartyDecryptor


class TelegramDecoder:
    """Bytes in (any chunking), `Frame` or `Dropped` out, in stream order."""

    def __init__(
        self,
        *,
        check_crc: bool = True,
        max_size: int = DEFAULT_MAX_FRAME,
        key: bytes | None = None,
        auth_key: bytes | None = SMARTY_AUTH_KEY,
        crc_memory: CrcMemory | None = None,
    ) -> None:
        # `crc_memory`: pass the same object for every connection to one meter, so that a
        # meter known to send CRCs stays held to them after a reconnect (see CrcMemory).
        self._framer = Framer(check_crc=check_crc, max_size=max_size, crc_memory=crc_memory)
        self._decryptor = (
            SmartyDecryptor(key, auth_key, max_size=max_size) if key is not None else None
        )

    @property
    def buffered(self) -> int:
        """Bytes held for unfinished frames (bounded by max_size per stage)."""
        held = self._framer.buffered
        if self._decryptor is not None:
            held += self._decryptor.buffered
        return held

    def feed(self, data: bytes) -> list[Frame | Dropped]:
        if self._decryptor is None:
            return self._framer.feed(data)
        return self._frame_plaintext(self._decryptor.feed(data), at_end=False)

    def flush(self) -> list[Frame | Dropped]:
        if self._decryptor is None:
            return self._framer.flush()
        return self._frame_plaintext(self._decryptor.flush(), at_end=True)

    def _frame_plaintext(
        self, pieces: list[bytes | Dropped], *, at_end: bool
    ) -> list[Frame | Dropped]:
        out: list[Frame | Dropped] = []
        for piece in pieces:
            if isinstance(piece, Dropped):
                out.append(piece)
            else:
                out.extend(self._framer.feed(piece))
                # Each decrypted frame is one whole telegram: nothing more will follow it.
                out.extend(self._framer.flush())
        if at_end:
            out.extend(self._framer.flush())
        return out
