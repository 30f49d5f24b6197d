"""The `[site]` section and the per-meter export cap fields (field names are public)."""

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

Topology = Literal["parallel", "series"]


class SiteSettings(BaseModel):
    """How the metering points of one grid connection relate, and the site's clock."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

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
    quarter_tolerance_s: float = Field(default=30.0, ge=0.0, le=450.0)
    # A register that advances faster than this is treated like a replaced meter (new
    # baseline, flagged) instead of producing one absurd quarter. Far above any home or
    # small-business connection.
    max_plausible_kw: float = Field(default=250.0, gt=0.0)
    # A meter without a reading for this long no longer counts towards the connection.
    stale_after_s: float = Field(default=60.0, gt=0.0)
    # Slack before a negative own share (series) is worth a warning: meters are read at
    # slightly different moments and round to 1 W / 1 Wh.
    tolerance_kw: float = Field(default=0.1, ge=0.0)
    tolerance_kwh: float = Field(default=0.01, ge=0.0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
