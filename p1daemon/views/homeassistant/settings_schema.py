"""What a valid `[homeassistant]` table is (keys: `p1daemon.views.homeassistant.settings`)."""

from pydantic import ConfigDict, Field, field_validator

from p1daemon.config.schema import Checks
from p1daemon.publish.topics import checked_topic_prefix


@field_validator("prefix")
def _prefix_is_a_topic(cls: type, value: str) -> str:
    return checked_topic_prefix(value)


CHECKS = {
    "HomeAssistantSettings": Checks(
        config=ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True),
        fields={"expire_after_s": Field(ge=0, le=86400)},
        validators=(_prefix_is_a_topic,),
    ),
}
