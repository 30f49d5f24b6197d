"""The configuration file as pydantic models: one `[[meters]]` table per metering point.

Every model forbids unknown keys (a misspelt key must be an error, never a silently
ignored setting) and is strict (TOML is typed, so `check_crc = "no"` is a mistake to
report, not a string to coerce). Rules that span several meters (one primary, unique
names and sources, settings that only make sense together) live in
`p1daemon.config.rules`, which sees the raw file and can therefore report them next to
field errors in one run; `p1daemon.config.loader.load_config` applies both.

Start-up (issue 16): every command that reads the file pays for building these models.
Each one is `defer_build`: its validator is made when it is first used, so loading a
file builds one validator (Config's, the sections inline) instead of one per model, and
a command that needs only `[mqtt]` (watch) builds that one alone. The modules of the
section models do without `from __future__ import annotations`: with it, pydantic
compiles and evaluates each field's annotation string while it builds the class.
"""

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from p1daemon.config.ean import ean_problem
from p1daemon.frame.smarty import SMARTY_AUTH_KEY, InvalidKeyError, parse_key
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.publish.topics import RESERVED_METER_NAMES
from p1daemon.reading.role import Role
from p1daemon.report.statement_settings import StatementSettings
from p1daemon.source.spec import SourceSpec, SourceSpecError, parse_source
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.history.settings import HISTORY_FILE, HistorySettings
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

NAME_PATTERN = re.compile(r"^[a-z0-9_-]+$")
MAX_NAME_LENGTH = 64
MAX_SECONDARY = 5
TARIFFS = ("t1", "t2", "t3", "t4")
# The promise: a vanished port is retried at least this often.
MAX_RECONNECT_INTERVAL_S = 5.0
# The framer's default (p1daemon.frame.framer.DEFAULT_MAX_FRAME, compared in
# tests/test_config.py): importing the framer (and its CRC tables) only for this number
# would make every command that reads the configuration pay for it.
DEFAULT_MAX_FRAME = 8 * 1024

PositiveSeconds = Annotated[float, Field(gt=0)]
NonNegativeSeconds = Annotated[float, Field(ge=0)]


class MeterConfig(BaseModel):
    """One metering point: its identity (name, role, EAN) and how to reach its P1 port."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    name: str
    role: Role = "primary"
    ean: str | None = None
    source: str
    baudrate: int | Literal["auto"] = "auto"
    bytesize: Literal[7, 8] | None = None
    parity: Literal["N", "E", "O"] | None = None
    stopbits: Literal[1, 2] | None = None
    key: SecretStr | None = None
    auth_key: SecretStr = SecretStr(SMARTY_AUTH_KEY.hex().upper())
    check_crc: bool = True
    max_frame_bytes: Annotated[int, Field(ge=256, le=1024 * 1024)] = DEFAULT_MAX_FRAME
    silence_timeout_s: PositiveSeconds = 30.0
    replay_interval_s: NonNegativeSeconds = 1.0
    replay_loop: bool = False
    publish_interval_s: NonNegativeSeconds = 0.0
    tariff_labels: dict[str, str] = Field(default_factory=dict)
    # Feed-in cap check (see p1daemon.views.energy.export_cap): alert when export power stays
    # above export_limit_kw for export_limit_hold_s. The hold time alone means nothing,
    # so rules.py refuses it without the limit.
    export_limit_kw: Annotated[float, Field(gt=0)] | None = None
    export_limit_hold_s: Annotated[float, Field(ge=0, le=86400)] = 60.0
    # Belgian capacity tariff watch (see p1daemon.views.capacity): "auto" only for a
    # meter that sends capacity data (1-0:1.4.0/1.6.0/0-0:98.1.0), "on" for any meter
    # (computed from its import registers), "off" never. Warn when the projected
    # quarter-hour exceeds capacity_target_kw (else this month's peak, at least 2.5 kW)
    # by capacity_margin_kw for capacity_hold_s; the hold must fit in a quarter-hour.
    capacity: Literal["auto", "on", "off"] = "auto"
    capacity_target_kw: Annotated[float, Field(gt=0, le=10000)] | None = None
    capacity_margin_kw: Annotated[float, Field(ge=0, le=10000)] = 0.0
    capacity_hold_s: Annotated[float, Field(ge=0, le=600)] = 30.0
    reconnect_initial_s: PositiveSeconds = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0, le=MAX_RECONNECT_INTERVAL_S)] = (
        MAX_RECONNECT_INTERVAL_S
    )
    # Serve accepted telegrams over TCP (p1daemon.serve); off unless an address is given.
    serve: str | None = None
    serve_max_clients: Annotated[int, Field(ge=1, le=64)] = 4

    @field_validator("name")
    @classmethod
    def _name_shape(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(
                f"use lower-case letters, digits, '-' and '_' only (it becomes an MQTT "
                f"topic level), got {value!r}"
            )
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(f"at most {MAX_NAME_LENGTH} characters, got {len(value)}")
        if value in RESERVED_METER_NAMES:
            raise ValueError(f"{value!r} is reserved: <topic_prefix>/{value}/... is not a meter")
        return value

    @field_validator("ean", mode="before")
    @classmethod
    def _ean_valid(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                "must be a quoted string of 18 digits (TOML numbers lose leading zeros)"
            )
        if isinstance(value, str):
            problem = ean_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("source", mode="before")
    @classmethod
    def _source_form(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        base_dir = (info.context or {}).get("base_dir")
        try:
            spec = parse_source(value, base_dir=base_dir)
        except SourceSpecError as exc:
            raise ValueError(str(exc)) from None
        if spec.path is not None and not spec.path.is_file():
            raise ValueError(f"replay file not found: {spec.path}")
        return spec.text

    @field_validator("serve")
    @classmethod
    def _serve_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from p1daemon.serve.address import parse_listen_address  # only meters that serve

        return parse_listen_address(value).text

    @field_validator("baudrate", mode="before")
    @classmethod
    def _baudrate_value(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if isinstance(value, int) and not isinstance(value, bool) and 50 <= value <= 4_000_000:
            return value
        raise ValueError(f'must be "auto" or a baud rate such as 115200 or 9600, got {value!r}')

    @field_validator("key", "auth_key", mode="before")
    @classmethod
    def _key_hex(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name == "auth_key" and isinstance(value, str) and value.lower() == "none":
            return value
        if isinstance(value, str):
            try:
                parse_key(value, "the key")
            except InvalidKeyError as exc:
                raise ValueError(str(exc).removeprefix("the key ")) from None
        return value

    @field_validator("tariff_labels", mode="before")
    @classmethod
    def _tariff_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = [k for k in value if k not in TARIFFS]
            if unknown:
                raise ValueError(f"unknown tariff {unknown[0]!r}; use t1, t2, t3 or t4")
        return value

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


# Each table of the file and the model that validates it.
SECTIONS: dict[str, type[BaseModel]] = {
    "mqtt": MqttSettings,
    "buffer": BufferSettings,
    "homeassistant": HomeAssistantSettings,
    "site": SiteSettings,
    "meters": MeterConfig,
}


class Config(BaseModel):
    """The whole file. `[mqtt]` and `[buffer]` belong to the publishing layer,
    `[homeassistant]` to discovery, `[site]` to the energy views.

    Strict like every section model: a string where a number or boolean belongs is an
    error naming the key, never a silent conversion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, defer_build=True)

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    buffer: BufferSettings = Field(default_factory=BufferSettings)
    homeassistant: HomeAssistantSettings = Field(default_factory=HomeAssistantSettings)
    site: SiteSettings = Field(default_factory=SiteSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    statements: StatementSettings = Field(default_factory=StatementSettings)
    meters: list[MeterConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _history_beside_the_outbox(self) -> Self:
        """Without `[history] path`, the history lives beside the outbox (the one folder
        the service may write, and a test's or the demo's own folder)."""
        if "path" not in self.history.model_fields_set:
            beside = str(Path(self.buffer.path).parent / HISTORY_FILE)
            # The models are frozen; this runs once, while the object is being built.
            object.__setattr__(self, "history", self.history.model_copy(update={"path": beside}))
        return self

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
