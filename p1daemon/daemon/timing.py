"""The daemon's timing defaults, apart from the daemon itself.

`p1daemon --help` shows `--drain-timeout`'s default: the command line reads it from
here so that printing the help does not import the daemon (and MQTT, SQLite, the views).
"""

from __future__ import annotations

TICK_S = 1.0
DRAIN_TIMEOUT_S = 60.0
