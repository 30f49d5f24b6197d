"""Identifiers Home Assistant accepts and keeps: discovery object ids and entity ids.

Discovery topic levels may only hold [a-zA-Z0-9_-]; entity ids only lower-case letters,
digits and single underscores. Equipment ids are whatever the meter sends (hex-decoded
text, sometimes with spaces), so they are cleaned. Cleaning alone could make two
different ids equal ("A B" and "A_B"), so a cleaned id that differs from the original
gets a short hash of the original: the same meter always maps to the same id, two
meters never share one.
"""

from __future__ import annotations

import hashlib
import re

_NOT_TOPIC_SAFE = re.compile(r"[^A-Za-z0-9_-]+")
_NOT_ENTITY_SAFE = re.compile(r"[^a-z0-9]+")


def topic_safe(text: str) -> str:
    """`text` usable inside a discovery object id; stable and collision-free."""
    cleaned = _NOT_TOPIC_SAFE.sub("_", text).strip("_")
    if cleaned == text and cleaned:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned}_{digest}" if cleaned else digest


def entity_slug(*parts: str) -> str:
    """Lower-case parts joined by single underscores: the shape of an entity id."""
    joined = "_".join(parts).lower()
    return _NOT_ENTITY_SAFE.sub("_", joined).strip("_")
