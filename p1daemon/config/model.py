"""The configuration file as dataclasses: one `[[meters]]` table per metering point.

These are what the daemon holds while it runs; what makes a file valid lives in
`p1daemon.config.model_schema` (see `p1daemon.config.section` for why the two are
apart). Every table forbids unknown keys (a misspelt key must be an error, never a
silently ignored setting) and is strict (TOML is typed, so `check_crc = "no"` is a
mistake to report, not a string to coerce). Rules that span several meters (one
primary, unique names and sources, settings that only make sense together) live in
`p1daemon.config.rules`, which sees the raw file and can therefore report them next to
field errors in one run; `p1daemon.config.loader.load_config` applies both.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from p1daemon.config.secret import Secret
from p1daemon.config.section import Section
from p1daemon.frame.smarty import SMARTY_AUTH_KEY, parse_key
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.reading.role import Role
from p1daemon.report.statement_settings import StatementSettings
from p1daemon.source.spec import SourceSpec, parse_source
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.history.settings import HistorySettings
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

MAX_SECONDARY = 5
TARIFFS = ("t1", "t2", "t3", "t4")
# The promise: a vanished port is retried at least this often.
MAX_RECONNECT_INTERVAL_S = 5.0
# The framer's default (p1daemon.frame.framer.DEFAULT_MAX_FRAME, compared in
# tests/test_config.py): importing the framer (and its CRC tables) only for this number
# would make every command that reads the configuration pay for it.
DEFAULT_MAX_FRAME = 8 * 1024

_CHECKS = "p1daemon.config.model_schema"
# The published Smarty authentication key, printed in every manual: not a secret, but
# held like the key that is.
_SMARTY_AUTH = Secret(SMARTY_AUTH_KEY.hex().upper())


@dataclass(frozen=True, kw_only=True, slots=True)
class MeterConfig(Section, checks=_CHECKS):
    """One metering point: its identity (name, role, EAN) and how to reach its P1 port."""

    name: str
    role: Role = "primary"
    ean: str | None = None
    source: str
    baudrate: int | Literal["auto"] = "auto"
    bytesize: Literal[7, 8] | None = None
    parity: Literal["N", "E", "O"] | None = None
    stopbits: Literal[1, 2] | None = None
    key: Secret | None = None
    auth_key: Secret = _SMARTY_AUTH
    check_crc: bool = True
    max_frame_bytes: int = DEFAULT_MAX_FRAME
    silence_timeout_s: float = 30.0
    replay_interval_s: float = 1.0
    replay_loop: bool = False
    publish_interval_s: float = 0.0
    tariff_labels: dict[str, str] = field(default_factory=dict)
    # Feed-in cap check (see p1daemon.views.energy.export_cap): alert when export power stays
    # above export_limit_kw for export_limit_hold_s. The hold time alone means nothing,
    # so rules.py refuses it without the limit.
    export_limit_kw: float | None = None
    export_limit_hold_s: float = 60.0
    # Belgian capacity tariff watch (see p1daemon.views.capacity): "auto" only for a
    # meter that sends capacity data (1-0:1.4.0/1.6.0/0-0:98.1.0), "on" for any meter
    # (computed from its import registers), "off" never. Warn when the projected
    # quarter-hour exceeds capacity_target_kw (else this month's peak, at least 2.5 kW)
    # by capacity_margin_kw for capacity_hold_s; the hold must fit in a quarter-hour.
    capacity: Literal["auto", "on", "off"] = "auto"
    capacity_target_kw: float | None = None
    capacity_margin_kw: float = 0.0
    capacity_hold_s: float = 30.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = MAX_RECONNECT_INTERVAL_S
    # Serve accepted telegrams over TCP (p1daemon.serve); off unless an address is given.
    serve: str | None = None
    serve_max_clients: int = 4

    @property
    def source_spec(self) -> SourceSpec:
        # Already validated (and replay paths made absolute) when the model was built.
        return parse_source(self.source)

    @property
    def key_bytes(self) -> bytes | None:
        return None if self.key is None else parse_key(self.key.get_secret_value())

    @property
    def auth_key_bytes(self) -> bytes | None:
        text = self.auth_key.get_secret_value()
        return None if text.lower() == "none" else parse_key(text)

    @property
    def finite(self) -> bool:
        """A non-looping replay: its reader ends by itself when the capture is played."""
        return self.source_spec.finite_capable and not self.replay_loop


# Each table of the file and the dataclass that holds it.
SECTIONS: dict[str, type[Section]] = {
    "mqtt": MqttSettings,
    "buffer": BufferSettings,
    "homeassistant": HomeAssistantSettings,
    "site": SiteSettings,
    "meters": MeterConfig,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Config(Section, checks=_CHECKS):
    """The whole file. `[mqtt]` and `[buffer]` belong to the publishing layer,
    `[homeassistant]` to discovery, `[site]` to the energy views.

    Strict like every section: a string where a number or boolean belongs is an
    error naming the key, never a silent conversion."""

    mqtt: MqttSettings = field(default_factory=MqttSettings)
    buffer: BufferSettings = field(default_factory=BufferSettings)
    homeassistant: HomeAssistantSettings = field(default_factory=HomeAssistantSettings)
    site: SiteSettings = field(default_factory=SiteSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    statements: StatementSettings = field(default_factory=StatementSettings)
    meters: list[MeterConfig]

    def meter(self, name: str) -> MeterConfig:
        for meter in self.meters:
            if meter.name == name:
                return meter
        raise KeyError(name)

    def secret_values(self) -> list[str]:
        """Every secret string in the configuration, for log redaction."""
        from p1daemon.config.secrets import secret_items  # it derives its rule from us

        return [value for _, value in secret_items(self)]

    @property
    def all_finite(self) -> bool:
        return all(meter.finite for meter in self.meters)


def base_dir_context(path: Path) -> dict[str, Any]:
    """Validation context: relative replay paths are relative to the config file's folder."""
    return {"base_dir": path.resolve().parent}
