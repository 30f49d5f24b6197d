"""The `[history]` section (field names are public: they are the configuration file).

What makes a value valid is in `p1daemon.views.history.settings_schema`.
"""

from dataclasses import dataclass
from pathlib import Path

from p1daemon.config.section import Section

HISTORY_FILE = "history.db"
# Only where no outbox path says otherwise: `Config` puts it beside the outbox.
DEFAULT_PATH = "/var/lib/p1daemon/" + HISTORY_FILE


@dataclass(frozen=True, kw_only=True, slots=True)
class HistorySettings(Section, checks="p1daemon.views.history.settings_schema"):
    """Where the settlement history lives and how much of it is kept."""

    enabled: bool = True
    # Beside the outbox by default; a relative path is relative to the config file.
    path: str = DEFAULT_PATH
    # The Dutch administrative retention period.
    keep_years: int = 7
    # Oldest days are dropped (counted and logged) when the file's data exceed this.
    max_mb: float = 200.0
    # Rows of one closed quarter are gathered this long and written in one transaction
    # for all meters (their readings close the quarter within a second of each other).
    commit_delay_s: float = 5.0
    # A history that could not be written is tried again this often.
    retry_interval_s: float = 60.0

    @property
    def file(self) -> Path:
        return Path(self.path)
