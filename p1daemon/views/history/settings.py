"""The `[history]` section (field names are public: they are the configuration file)."""

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

HISTORY_FILE = "history.db"
# Only where no outbox path says otherwise: `Config` puts it beside the outbox.
DEFAULT_PATH = "/var/lib/p1daemon/" + HISTORY_FILE


class HistorySettings(BaseModel):
    """Where the settlement history lives and how much of it is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    enabled: bool = True
    # Beside the outbox by default; a relative path is relative to the config file.
    path: str = DEFAULT_PATH
    # The Dutch administrative retention period.
    keep_years: int = Field(default=7, ge=1, le=100)
    # Oldest days are dropped (counted and logged) when the file's data exceed this.
    max_mb: float = Field(default=200.0, gt=0, le=65536)
    # Rows of one closed quarter are gathered this long and written in one transaction
    # for all meters (their readings close the quarter within a second of each other).
    commit_delay_s: float = Field(default=5.0, ge=0.0, le=600.0)
    # A history that could not be written is tried again this often.
    retry_interval_s: float = Field(default=60.0, gt=0.0, le=3600.0)

    @field_validator("path")
    @classmethod
    def _beside_config(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        path = Path(value)
        base_dir = (info.context or {}).get("base_dir")
        if path.is_absolute() or base_dir is None:
            return value
        return os.path.normpath(Path(base_dir) / path)

    @field_validator("max_mb", "commit_delay_s", "retry_interval_s", mode="before")
    @classmethod
    def _int_is_fine(cls, value: object) -> object:
        # TOML `max_mb = 50` is an integer; strict mode would refuse it for a float.
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def file(self) -> Path:
        return Path(self.path)
