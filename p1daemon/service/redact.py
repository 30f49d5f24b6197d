"""Keeps configured secret values (MQTT password, Smarty key, ...) out of every log line.

Redaction works on the finished line, after the message, its arguments and any exception
text have been rendered, so a secret that slips into an exception message or a URL is
caught too. Callers should still not log secrets; this is the net under them.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"


class Redactor:
    """Replaces every occurrence of the current secrets; secrets can change on reload."""

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
            if not secret:
                continue
            forms.update({secret, quote(secret, safe=""), repr(secret)[1:-1]})
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted(forms, key=len, reverse=True)
        pattern = (
            re.compile("|".join(re.escape(f) for f in ordered), re.IGNORECASE) if ordered else None
        )
        with self._lock:
            self._pattern = pattern

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        return text if pattern is None else pattern.sub(MASK, text)
