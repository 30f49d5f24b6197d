"""The `[statements]` section: how `p1daemon report --statement feed-in` prices export.

    [statements]
    feed_in_price_eur_per_kwh = 0.08   # base price, EUR/kWh excluding VAT
    feed_in_factor = 0.7               # NMa policy rule: damping factor of at least 0.7
    netting = "none"                   # none | per_register | total
    hourly_price_file = "prices.csv"   # optional: hour start (ISO 8601 with offset), EUR/kWh

    [statements.meter.carport]         # per meter: any of the three above
    feed_in_price_eur_per_kwh = 0.05

Numbers are kept as decimals (a TOML float's shortest text), so amounts are exact to the
cent. Field names are public: they are the configuration file. What makes a value
valid is in `p1daemon.report.statement_settings_schema`.
"""

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from p1daemon.config.section import Section

Netting = Literal["none", "per_register", "total"]
_CHECKS = "p1daemon.report.statement_settings_schema"


@dataclass(frozen=True, kw_only=True, slots=True)
class FeedInTerms(Section, checks=_CHECKS):
    feed_in_price_eur_per_kwh: Decimal | None = None
    feed_in_factor: Decimal | None = None
    netting: Netting | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class StatementSettings(FeedInTerms, checks=_CHECKS):
    feed_in_price_eur_per_kwh: Decimal | None = Decimal("0")
    feed_in_factor: Decimal | None = Decimal("1")
    netting: Netting | None = "none"
    hourly_price_file: str | None = None
    meter: dict[str, FeedInTerms] = field(default_factory=dict)

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
