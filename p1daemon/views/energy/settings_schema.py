"""What a valid `[site]` table is (the keys are in `p1daemon.views.energy.settings`)."""

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator

from p1daemon.config.schema import Checks


@field_validator("timezone")
def _known_zone(cls: type, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


CHECKS = {
    "SiteSettings": Checks(
        config=ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True),
        fields={
            "quarter_tolerance_s": Field(ge=0.0, le=450.0),
            "max_plausible_kw": Field(gt=0.0),
            "stale_after_s": Field(gt=0.0),
            "tolerance_kw": Field(ge=0.0),
            "tolerance_kwh": Field(ge=0.0),
        },
        validators=(_known_zone,),
    ),
}
