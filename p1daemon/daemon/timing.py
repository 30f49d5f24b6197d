"""The daemon's timing defaults, apart from the daemon itself.

`p1daemon --help` shows `--drain-timeout`'s default: the command line reads it from
here so that printing the help does not import the daemon (and MQTT, SQLite, the views).
"""

from __future__ import annotations

# How often the main loop wakes to tell the service manager how it is doing: STATUS is
# sent at most every 5 s anyway, and the watchdog needs a ping every half timeout
# (`SystemdHooks.tick_interval_s` shortens the tick for a watchdog shorter than 15 s).
# Everything else the main loop does (stop, reload, the end of a replay) wakes it.
TICK_S = 5.0
DRAIN_TIMEOUT_S = 60.0
