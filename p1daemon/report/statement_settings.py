"""The `[statements]` section: how `p1daemon report --statement feed-in` prices export.

    [statements]
    feed_in_price_eur_per_kwh = 0.08   # base price, EUR/kWh excluding VAT
    feed_in_factor = 0.7               # NMa policy rule: damping factor of at least 0.7
    netting = "none"                   # none | per_register | total
    hourly_price_file = "prices.csv"   # optional: hour start (ISO 8601 with offset), EUR/kWh

    [statements.meter.carport]         # per meter: any of the three above
    feed_in_price_eur_per_kwh = 0.05

Numbers are kept as decimals (a TOML float's shortest text), so amounts are exact to the
cent. Field names are public: they are the configuration file.
"""

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

Netting = Literal["none", "per_register", "total"]


def _decimal(value: object) -> object:
    if isinstance(value, bool):
        return value  # refused below
    if isinstance(value, int | float | str):
        try:
            return Decimal(repr(value) if isinstance(value, float) else str(value))
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    return value


class FeedInTerms(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    feed_in_price_eur_per_kwh: Decimal | None = None
    feed_in_factor: Decimal | None = None
    netting: Netting | None = None

    @field_validator("feed_in_price_eur_per_kwh", "feed_in_factor", mode="before")
    @classmethod
    def _exact(cls, value: object) -> object:
        return _decimal(value)

    @field_validator("feed_in_price_eur_per_kwh", "feed_in_factor")
    @classmethod
    def _not_negative(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and (not value.is_finite() or value < 0):
            raise ValueError("must be a number of at least 0")
        return value


class StatementSettings(FeedInTerms):
    feed_in_price_eur_per_kwh: Decimal | None = Decimal("0")
    feed_in_factor: Decimal | None = Decimal("1")
    netting: Netting | None = "none"
    hourly_price_file: str | None = None
    meter: dict[str, FeedInTerms] = Field(default_factory=dict)

    @field_validator("hourly_price_file")
    @classmethod
    def _beside_config(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        base_dir = (info.context or {}).get("base_dir")
        if Path(value).is_absolute() or base_dir is None:
            return value
        return os.path.normpath(Path(base_dir) / value)

    def terms(self, meter: str) -> tuple[Decimal, Decimal, Netting]:
        """(price, factor, netting) for `meter`: its own where set, else the section's."""
        own = self.meter.get(meter, FeedInTerms())
        price = own.feed_in_price_eur_per_kwh
        if price is None:
            price = self.feed_in_price_eur_per_kwh
        factor = own.feed_in_factor if own.feed_in_factor is not None else self.feed_in_factor
        netting = own.netting or self.netting
        assert price is not None and factor is not None and netting is not None
        return price, factor, netting
