"""What a valid `[statements]` table is (keys: `p1daemon.report.statement_settings`)."""

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path

from pydantic import ConfigDict, ValidationInfo, field_validator

from p1daemon.config.schema import Checks


def _decimal(value: object) -> object:
    if isinstance(value, bool):
        return value  # refused below
    if isinstance(value, int | float | str):
        try:
            return Decimal(repr(value) if isinstance(value, float) else str(value))
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    return value


@field_validator("feed_in_price_eur_per_kwh", "feed_in_factor", mode="before")
def _exact(cls: type, value: object) -> object:
    return _decimal(value)


@field_validator("feed_in_price_eur_per_kwh", "feed_in_factor")
def _not_negative(cls: type, value: Decimal | None) -> Decimal | None:
    if value is not None and (not value.is_finite() or value < 0):
        raise ValueError("must be a number of at least 0")
    return value


@field_validator("hourly_price_file")
def _beside_config(cls: type, value: str | None, info: ValidationInfo) -> str | None:
    if value is None:
        return None
    base_dir = (info.context or {}).get("base_dir")
    if Path(value).is_absolute() or base_dir is None:
        return value
    return os.path.normpath(Path(base_dir) / value)


# Not strict, unlike the other sections: prices are decimals made from TOML numbers.
_TERMS = ConfigDict(extra="forbid", frozen=True, defer_build=True)

CHECKS = {
    "FeedInTerms": Checks(config=_TERMS, validators=(_exact, _not_negative)),
    "StatementSettings": Checks(config=_TERMS, validators=(_exact, _not_negative, _beside_config)),
}
