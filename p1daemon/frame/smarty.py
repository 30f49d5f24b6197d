"""Luxembourg Smarty: AES-128-GCM "general-glo-ciphering" frames around a DSMR telegram.

Wire layout (Smarty P1 v1.1.3 §3.2.5):
    DB 08 <system title 8> 82 <len 2> 30 <frame counter 4> <ciphertext> <GCM tag 12>
with len = 1 + 4 + len(ciphertext) + 12, IV = system title + frame counter and
AAD = 0x30 + AK. The GCM tag is what tells a wrong key from a right one: a frame that
does not authenticate is dropped as `decrypt_failed`, never passed on as garbage text.

`cryptography` is imported lazily so that meters without encryption need no extra package.
"""

from __future__ import annotations

from typing import Any

from p1daemon.frame.events import Dropped, DropReason

SMARTY_AUTH_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
TAG_LENGTH = 12
_HEADER_LENGTH = 18  # DB 08 title(8) 82 len(2) 30 counter(4)
_DEFAULT_MAX_FRAME = 8 * 1024


class InvalidKeyError(ValueError):
    """A key given on the command line or in the config is not 16 bytes of hex."""


def parse_key(text: str, what: str = "key") -> bytes:
    """Turn 32 hex digits into a 16-byte AES key, with a one-line reason when it is not."""
    cleaned = text.strip().replace(" ", "")
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise InvalidKeyError(
            f"{what} must be 32 hexadecimal digits, got {len(cleaned)} characters"
        ) from None
    if len(key) != 16:
        raise InvalidKeyError(
            f"{what} must be 32 hexadecimal digits (16 bytes), got {len(key)} bytes"
        )
    return key


def _load_cipher_parts() -> tuple[Any, Any, Any, Any]:
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:  # pragma: no cover - depends on the installation
        raise RuntimeError(
            "decrypting Smarty telegrams needs the 'cryptography' package: "
            "pip install 'p1daemon[smarty]'"
        ) from None
    return Cipher, algorithms, modes, InvalidTag


class SmartyDecryptor:
    """Finds encrypted frames in a byte stream and yields their plaintext telegrams."""

    def __init__(
        self,
        key: bytes,
        auth_key: bytes | None = SMARTY_AUTH_KEY,
        *,
        max_size: int = _DEFAULT_MAX_FRAME,
    ) -> None:
        self._cipher, self._algorithms, self._modes, self._invalid_tag = _load_cipher_parts()
        self._aes = self._algorithms.AES(key)
        self._aad = b"" if auth_key is None else b"\x30" + auth_key
        self.max_size = max_size
        self._buf = bytearray()
        self._garbage = 0

    @property
    def buffered(self) -> int:
        """Bytes held for an unfinished frame: never more than max_size."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | Dropped]:
        """Add ciphertext bytes; return plaintext telegrams and drops in stream order.

        The buffer is scanned with an index and trimmed once per call: deleting byte by
        byte would turn a chunk full of 0xDB bytes (a wrong baud rate) into quadratic work.
        """
        out: list[bytes | Dropped] = []
        buf = self._buf
        buf += data
        size = len(buf)
        pos = 0
        while True:
            start = buf.find(b"\xdb", pos)
            if start < 0:
                self._add_garbage(size - pos, out)
                pos = size
                break
            self._add_garbage(start - pos, out)
            pos = start
            if size - pos < _HEADER_LENGTH:
                break
            total = self._frame_length(buf, pos)
            if total is None:
                self._add_garbage(1, out)
                pos += 1
                continue
            if size - pos < total:
                break
            self._end_garbage(out)
            # The header was consistent, so the frame boundary is trusted: a frame that does
            # not authenticate is skipped whole rather than re-reported as garbage.
            plain = self._decrypt(bytes(buf[pos : pos + total]))
            pos += total
            if plain is None:
                out.append(
                    Dropped(
                        DropReason.DECRYPT_FAILED, "authentication tag mismatch (wrong key?)", total
                    )
                )
            else:
                out.append(plain)
        del buf[:pos]
        return out

    def flush(self) -> list[bytes | Dropped]:
        """End of stream: a partial frame is `truncated`, anything else `garbage`, in order."""
        out: list[bytes | Dropped] = []
        buf = self._buf
        if buf:
            if self._could_be_frame_start(buf):
                self._end_garbage(out)
                out.append(
                    Dropped(
                        DropReason.TRUNCATED, "stream ended inside an encrypted frame", len(buf)
                    )
                )
            else:
                self._add_garbage(len(buf), out)
            buf.clear()
        self._end_garbage(out)
        return out

    def _frame_length(self, buf: bytearray, pos: int) -> int | None:
        """Total length of the frame whose complete header starts at `pos`, or None."""
        if buf[pos + 1] != 0x08 or buf[pos + 10] != 0x82 or buf[pos + 13] != 0x30:
            return None
        length = int.from_bytes(buf[pos + 11 : pos + 13], "big")
        total = 13 + length
        if length < 5 + TAG_LENGTH or total > self.max_size:
            return None
        return total

    def _could_be_frame_start(self, partial: bytearray) -> bool:
        """Whether the header fields present in a short tail are those of a frame."""
        checks = ((1, 0x08), (10, 0x82), (13, 0x30))
        if any(len(partial) > at and partial[at] != value for at, value in checks):
            return False
        if len(partial) >= 13:
            length = int.from_bytes(partial[11:13], "big")
            return length >= 5 + TAG_LENGTH and 13 + length <= self.max_size
        return True

    def _add_garbage(self, count: int, out: list[bytes | Dropped]) -> None:
        """Count bytes outside frames, reported in exact max_size pieces while a flood lasts."""
        self._garbage += count
        while self._garbage >= self.max_size:
            out.append(
                Dropped(DropReason.GARBAGE, "bytes outside an encrypted frame", self.max_size)
            )
            self._garbage -= self.max_size

    def _end_garbage(self, out: list[bytes | Dropped]) -> None:
        if self._garbage:
            out.append(
                Dropped(DropReason.GARBAGE, "bytes outside an encrypted frame", self._garbage)
            )
            self._garbage = 0

    def _decrypt(self, frame: bytes) -> bytes | None:
        iv = frame[2:10] + frame[14:18]
        ciphertext = frame[_HEADER_LENGTH:-TAG_LENGTH]
        tag = frame[-TAG_LENGTH:]
        decryptor = self._cipher(
            self._aes, self._modes.GCM(iv, tag, min_tag_length=TAG_LENGTH)
        ).decryptor()
        if self._aad:
            decryptor.authenticate_additional_data(self._aad)
        try:
            plain: bytes = decryptor.update(ciphertext) + decryptor.finalize()
        except self._invalid_tag:
            return None
        return bytes(plain)


def encrypt_frame(
    plaintext: bytes,
    key: bytes,
    *,
    system_title: bytes = b"P1DTEST1",
    frame_counter: int = 1,
    auth_key: bytes | None = SMARTY_AUTH_KEY,
) -> bytes:
    """Build a Smarty frame; the project uses it to write its own encrypted fixtures."""
    cipher_cls, algorithms, modes, _ = _load_cipher_parts()
    if len(system_title) != 8:
        raise ValueError("system title must be 8 bytes")
    counter = frame_counter.to_bytes(4, "big")
    encryptor = cipher_cls(algorithms.AES(key), modes.GCM(system_title + counter)).encryptor()
    if auth_key is not None:
        encryptor.authenticate_additional_data(b"\x30" + auth_key)
    ciphertext: bytes = encryptor.update(plaintext) + encryptor.finalize()
    tag: bytes = encryptor.tag[:TAG_LENGTH]
    length = 5 + len(ciphertext) + TAG_LENGTH
    return (
        b"\xdb\x08"
        + system_title
        + b"\x82"
        + length.to_bytes(2, "big")
        + b"\x30"
        + counter
        + ciphertext
        + tag
    )
