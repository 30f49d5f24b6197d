"""What a valid `[history]` table is (the keys are in `p1daemon.views.history.settings`)."""

import os
from pathlib import Path

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from p1daemon.config.schema import Checks


@field_validator("path")
def _beside_config(cls: type, value: str, info: ValidationInfo) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    path = Path(value)
    base_dir = (info.context or {}).get("base_dir")
    if path.is_absolute() or base_dir is None:
        return value
    return os.path.normpath(Path(base_dir) / path)


@field_validator("max_mb", "commit_delay_s", "retry_interval_s", mode="before")
def _int_is_fine(cls: type, value: object) -> object:
    # TOML `max_mb = 50` is an integer; strict mode would refuse it for a float.
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


CHECKS = {
    "HistorySettings": Checks(
        config=ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True),
        fields={
            "keep_years": Field(ge=1, le=100),
            "max_mb": Field(gt=0, le=65536),
            "commit_delay_s": Field(ge=0.0, le=600.0),
            "retry_interval_s": Field(gt=0.0, le=3600.0),
        },
        validators=(_beside_config, _int_is_fine),
    ),
}
