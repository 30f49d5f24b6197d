"""The `[homeassistant]` section of the configuration file (field names are public)."""

from pydantic import BaseModel, ConfigDict, Field, field_validator

from p1daemon.publish.topics import checked_topic_prefix


class HomeAssistantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    # Off by default: retained discovery configs appear in every Home Assistant that
    # listens on the broker, which nobody should get without asking for it.
    discovery: bool = False
    prefix: str = "homeassistant"
    # Seconds without a new `latest` after which Home Assistant shows an entity as
    # unavailable. 0 leaves it off: `<prefix>/status` already covers a dead daemon, and a
    # value shorter than the meter's telegram interval (or publish_interval_s) would make
    # entities flap. Set it to catch a meter cable that came loose while the daemon runs.
    expire_after_s: int = Field(default=0, ge=0, le=86400)

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_topic(cls, value: str) -> str:
        return checked_topic_prefix(value)
