"""The configuration file: loading, validation with one-line errors, and display."""

from p1daemon.config.errors import ConfigError
from p1daemon.config.loader import load_config
from p1daemon.config.model import Config, MeterConfig

__all__ = ["Config", "ConfigError", "MeterConfig", "load_config"]
