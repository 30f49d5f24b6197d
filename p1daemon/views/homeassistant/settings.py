"""The `[homeassistant]` section of the configuration file (field names are public).

What makes a value valid is in `p1daemon.views.homeassistant.settings_schema`.
"""

from dataclasses import dataclass

from p1daemon.config.section import Section


@dataclass(frozen=True, kw_only=True, slots=True)
class HomeAssistantSettings(Section, checks="p1daemon.views.homeassistant.settings_schema"):
    # Off by default: retained discovery configs appear in every Home Assistant that
    # listens on the broker, which nobody should get without asking for it.
    discovery: bool = False
    prefix: str = "homeassistant"
    # Seconds without a new `latest` after which Home Assistant shows an entity as
    # unavailable. 0 leaves it off: `<prefix>/status` already covers a dead daemon, and a
    # value shorter than the meter's telegram interval (or publish_interval_s) would make
    # entities flap. Set it to catch a meter cable that came loose while the daemon runs.
    expire_after_s: int = 0
