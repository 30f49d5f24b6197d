"""Keeps configured secret values (MQTT password, Smarty key, ...) out of every log line.

Redaction works on the finished line, after the message, its arguments and any exception
text have been rendered, so a secret that slips into an exception message or a URL is
caught too. Callers should still not log secrets; this is the net under them.

Only whole values are masked: an occurrence counts when it is not glued to a letter,
digit or underscore on either side (a side where the secret itself begins or ends with
punctuation is bounded by that punctuation). The password `meter` is masked in
`password=meter` and `'meter'`, but not inside `parameters`.

Secrets shorter than `MIN_SECRET_LENGTH` are not masked at all: a one-character
password would turn every "1" or "s" of the log into `***`, and the mask itself would
give the password away ("started *** meter reader(s)"). The configuration layer warns
about such a secret instead (`p1daemon.config.secrets.short_secret_warnings`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
MIN_SECRET_LENGTH = 4


def _word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _whole(form: str) -> str:
    """A pattern for `form` that does not match inside a longer word."""
    before = r"(?<!\w)" if _word_char(form[0]) else ""
    after = r"(?!\w)" if _word_char(form[-1]) else ""
    return f"{before}{re.escape(form)}{after}"


class Redactor:
    """Replaces every whole occurrence of the current secrets; secrets can change on reload."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Forms a secret may take in a log line: as is, URL-quoted, and repr-escaped.

        Matching ignores case because keys are hex and may be printed in either case.
        """
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_LENGTH:
                continue
            forms.update({secret, quote(secret, safe=""), repr(secret)[1:-1]})
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        pattern = (
            re.compile("|".join(_whole(f) for f in ordered), re.IGNORECASE) if ordered else None
        )
        with self._lock:
            self._pattern = pattern

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)
