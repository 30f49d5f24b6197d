"""The configuration file: loading, validation with one-line errors, and display.

The names below load on first use: the running daemon imports the configuration
dataclasses from this package but must not import the validator (pydantic) with
them, see `p1daemon.config.section`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from p1daemon.config.errors import ConfigError
    from p1daemon.config.loader import load_config
    from p1daemon.config.model import Config, MeterConfig

__all__ = ["Config", "ConfigError", "MeterConfig", "load_config"]

_HOMES = {
    "Config": "p1daemon.config.model",
    "MeterConfig": "p1daemon.config.model",
    "ConfigError": "p1daemon.config.errors",
    "load_config": "p1daemon.config.loader",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
