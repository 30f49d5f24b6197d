"""The `[site]` section and the per-meter export cap fields (field names are public).

What makes a value valid is in `p1daemon.views.energy.settings_schema`.
"""

from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from p1daemon.config.section import Section

Topology = Literal["parallel", "series"]


@dataclass(frozen=True, kw_only=True, slots=True)
class SiteSettings(Section, checks="p1daemon.views.energy.settings_schema"):
    """How the metering points of one grid connection relate, and the site's clock."""

    # parallel: every meter measures its own branch; the connection is their sum.
    # series: the primary meter measures the whole connection and the secondaries sit
    # behind it; the primary allocation point's own share is primary minus secondaries.
    topology: Topology = "parallel"
    # Quarter-hours and days are local time: a day here has 23, 24 or 25 hours.
    timezone: str = "Europe/Amsterdam"
    # A reading interval that crosses a quarter boundary is booked to one side when the
    # reading on that side is at most this far from the boundary; farther, and the
    # interval is reported as a gap rather than guessed. DSMR 4 sends every 10 s, so 30 s
    # survives two lost telegrams.
    quarter_tolerance_s: float = 30.0
    # A register that advances faster than this is treated like a replaced meter (new
    # baseline, flagged) instead of producing one absurd quarter. Far above any home or
    # small-business connection.
    max_plausible_kw: float = 250.0
    # A meter without a reading for this long no longer counts towards the connection.
    stale_after_s: float = 60.0
    # Slack before a negative own share (series) is worth a warning: meters are read at
    # slightly different moments and round to 1 W / 1 Wh.
    tolerance_kw: float = 0.1
    tolerance_kwh: float = 0.01

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
