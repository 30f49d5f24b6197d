"""The bytes of every JSON message the daemon composes itself (health, discovery, ...).

One encoder, so that two messages built from equal data are byte-equal (sorted keys):
that is what lets a retained topic be left alone when nothing changed. UTF-8 rather than
ASCII escapes keeps units such as "m³" readable in any MQTT client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def compact_json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
