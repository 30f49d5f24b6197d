"""Every configuration rule, each with the exact one-line error a user would see."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p1daemon.config import ConfigError, load_config
from p1daemon.config.ean import ean_problem, gs1_check_digit
from p1daemon.config.render import render_config
from p1daemon.frame.framer import DEFAULT_MAX_FRAME

VALID_EAN = "871685900012345674"
OTHER_EAN = "871685900012345681"
FILE = "p1daemon.toml"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "house.txt").write_bytes(b"")
    (tmp_path / "carport.txt").write_bytes(b"")


def write(text: str) -> str:
    Path(FILE).write_text(textwrap.dedent(text), encoding="utf-8")
    return FILE


def errors(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(text), environ or {})
    return info.value.lines


ONE_METER = """
[[meters]]
name = "house"
source = "/dev/ttyUSB0"
"""


def meter(**keys: object) -> str:
    lines = ["[[meters]]"]
    for key, value in keys.items():
        rendered = f'"{value}"' if isinstance(value, str) else str(value).lower()
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


# -- a good file ----------------------------------------------------------------------


def test_minimal_file_gets_defaults() -> None:
    config = load_config(write(ONE_METER), {})
    (house,) = config.meters
    assert house.role == "primary"
    assert house.baudrate == "auto"
    assert house.check_crc is True
    assert house.max_frame_bytes == 8192
    assert house.max_frame_bytes == DEFAULT_MAX_FRAME  # the framer's own default
    assert house.silence_timeout_s == 30
    assert house.replay_interval_s == 1.0
    assert house.replay_loop is False
    assert house.publish_interval_s == 0
    assert house.reconnect_max_s == 5.0
    assert config.mqtt.host == "127.0.0.1"


def test_primary_and_secondaries_with_eans() -> None:
    text = meter(name="house", role="primary", ean=VALID_EAN, source="/dev/ttyUSB0")
    for i in range(5):
        text += meter(name=f"sub-{i}", role="secondary", source=f"socket://10.0.0.{i}:2000")
    config = load_config(write(text), {})
    assert [m.role for m in config.meters] == ["primary"] + ["secondary"] * 5
    assert config.meters[0].ean == VALID_EAN


def test_relative_replay_path_resolves_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write(meter(name="house", source="replay:house.txt"))
    monkeypatch.chdir(elsewhere)
    config = load_config(tmp_path / FILE, {})
    assert config.meters[0].source == f"replay:{tmp_path / 'house.txt'}"
    assert config.meters[0].finite


# -- one line per problem, naming file, key and reason --------------------------------


@pytest.mark.parametrize(
    ("keys", "line"),
    [
        ({"ean": "871685900012345677"}, "meters[0].ean: check digit should be 4, got 7"),
        ({"ean": "87168590001234567"}, "meters[0].ean: must be 18 digits, got 17"),
        (
            {"ean": "87168590001234567X"},
            "meters[0].ean: must be 18 digits, got '87168590001234567X'",
        ),
        (
            {"name": "House"},
            "meters[0].name: use lower-case letters, digits, '-' and '_' only "
            "(it becomes an MQTT topic level), got 'House'",
        ),
        (
            {"name": "a/b"},
            "meters[0].name: use lower-case letters, digits, '-' and '_' only "
            "(it becomes an MQTT topic level), got 'a/b'",
        ),
        (
            {"role": "main"},
            "meters[0].role: should be 'primary' or 'secondary', got the string 'main'",
        ),
        (
            {"baudrate": "fast"},
            'meters[0].baudrate: must be "auto" or a baud rate such as '
            "115200 or 9600, got 'fast'",
        ),
        ({"check_crc": "no"}, "meters[0].check_crc: should be true or false, got the string 'no'"),
        (
            {"silence_timeout_s": 0},
            "meters[0].silence_timeout_s: should be greater than 0, got the number 0",
        ),
        (
            {"replay_interval_s": -1},
            "meters[0].replay_interval_s: should be greater than or equal to 0, got the number -1",
        ),
        (
            {"reconnect_max_s": 30},
            "meters[0].reconnect_max_s: should be less than or equal to 5, got the number 30",
        ),
        (
            {"max_frame_bytes": 10},
            "meters[0].max_frame_bytes: should be greater than or equal to 256, got the number 10",
        ),
        ({"key": "abc"}, "meters[0].key: must be 32 hexadecimal digits, got 3 characters"),
        (
            {"auth_key": "00" * 15},
            "meters[0].auth_key: must be 32 hexadecimal digits (16 bytes), got 15 bytes",
        ),
        (
            {"parity": "E"},
            'meters[0].parity: needs a fixed baudrate (baudrate = "auto" detects '
            "115200 8N1 or 9600 7E1 by itself)",
        ),
        (
            {"baudrate": 9600, "parity": "X"},
            "meters[0].parity: should be 'N', 'E' or 'O', got the string 'X'",
        ),
        (
            {"reconnect_initial_s": 3, "reconnect_max_s": 2},
            "meters[0].reconnect_initial_s: must not exceed reconnect_max_s (2)",
        ),
        ({"baudrat": 9600}, "meters[0].baudrat: unknown key (did you mean 'baudrate'?)"),
        (
            {"source": "sockets://x:1"},
            "meters[0].source: unsupported scheme in 'sockets://x:1'; "
            "expected a device path (/dev/...), socket://host:port, rfc2217://host:port or "
            "replay:PATH",
        ),
        (
            {"source": "ttyUSB0"},
            "meters[0].source: expected a device path (/dev/...), "
            "socket://host:port, rfc2217://host:port or replay:PATH, got 'ttyUSB0'",
        ),
        (
            {"source": "socket://bridge"},
            "meters[0].source: socket:// needs host:port, got 'socket://bridge'",
        ),
        (
            {"source": "socket://bridge:0"},
            "meters[0].source: socket:// needs a port number "
            "from 1 to 65535, got 'socket://bridge:0'",
        ),
    ],
)
def test_meter_key_problem(keys: dict[str, object], line: str) -> None:
    base: dict[str, object] = {"name": "house", "source": "/dev/ttyUSB0"}
    assert errors(meter(**(base | keys))) == [f"{FILE}: {line}"]


def test_ean_written_as_a_number() -> None:
    text = '[[meters]]\nname = "h"\nsource = "/dev/x"\nean = 871685900012345674\n'
    assert errors(text) == [
        f"{FILE}: meters[0].ean: must be a quoted string of 18 digits "
        "(TOML numbers lose leading zeros)"
    ]


def test_replay_file_must_exist(tmp_path: Path) -> None:
    assert errors(meter(name="house", source="replay:missing.txt")) == [
        f"{FILE}: meters[0].source: replay file not found: {tmp_path / 'missing.txt'}"
    ]


def test_unknown_tariff_label() -> None:
    text = ONE_METER + 'tariff_labels = { t1 = "low", t5 = "x" }\n'
    assert errors(text) == [
        f"{FILE}: meters[0].tariff_labels: unknown tariff 't5'; use t1, t2, t3 or t4"
    ]


def test_tariff_labels_accepted() -> None:
    text = ONE_METER + 'tariff_labels = { t1 = "low", t2 = "normal" }\n'
    assert load_config(write(text), {}).meters[0].tariff_labels == {"t1": "low", "t2": "normal"}


def test_at_most_one_primary() -> None:
    text = meter(name="house", source="/dev/a") + meter(name="carport", source="/dev/b")
    assert errors(text) == [
        f"{FILE}: meters[1].role: at most one meter can be primary, meters[0] (house) already "
        'is (role defaults to "primary")'
    ]
    text = meter(name="house", source="/dev/a") + meter(
        name="carport", role="primary", source="/dev/b"
    )
    assert errors(text) == [
        f"{FILE}: meters[1].role: at most one meter can be primary, meters[0] (house) already is"
    ]


def test_at_most_five_secondaries() -> None:
    text = "".join(meter(name=f"m{i}", role="secondary", source=f"/dev/tty{i}") for i in range(6))
    assert errors(text) == [
        f"{FILE}: meters[5].role: at most 5 secondary metering points per connection"
    ]


def test_names_sources_and_eans_unique(tmp_path: Path) -> None:
    text = (
        meter(name="house", source="replay:house.txt", ean=VALID_EAN)
        + meter(name="house", role="secondary", source=f"replay:{tmp_path}/house.txt")
        + meter(name="carport", role="secondary", source="/dev/x", ean=VALID_EAN)
    )
    assert errors(text) == [
        f"{FILE}: meters[1].name: same name as meters[0] (house)",
        f"{FILE}: meters[1].source: same source as meters[0] (house)",
        f"{FILE}: meters[2].ean: same EAN as meters[0] (house)",
    ]


@pytest.mark.parametrize("name", ["daemon", "site"])
def test_topic_level_names_are_reserved(name: str) -> None:
    assert errors(meter(name=name, source="/dev/ttyUSB0")) == [
        f"{FILE}: meters[0].name: {name!r} is reserved: <topic_prefix>/{name}/... is not a meter"
    ]


def test_same_device_through_a_symlink_is_a_duplicate(tmp_path: Path) -> None:
    device = tmp_path / "ttyUSB0"
    device.touch()
    (tmp_path / "by-id").symlink_to(device)
    text = meter(name="a", source=str(device)) + meter(
        name="b", role="secondary", source=str(tmp_path / "by-id")
    )
    assert errors(text) == [f"{FILE}: meters[1].source: same source as meters[0] (a)"]


def test_socket_sources_compare_case_insensitively() -> None:
    text = meter(name="a", source="socket://Bridge:2000") + meter(
        name="b", role="secondary", source="socket://bridge:2000"
    )
    assert errors(text) == [f"{FILE}: meters[1].source: same source as meters[0] (a)"]


def test_meters_required_and_not_empty() -> None:
    assert errors("[mqtt]\n") == [f"{FILE}: meters: required key is missing"]
    assert errors("meters = []\n") == [f"{FILE}: meters: at least one [[meters]] table is needed"]


def test_unknown_keys_everywhere() -> None:
    text = '[mqtt]\nhots = "x"\n[buffr]\n' + ONE_METER
    assert errors(text) == [
        f"{FILE}: mqtt.hots: unknown key (did you mean 'host'?)",
        f"{FILE}: buffr: unknown key (did you mean 'buffer'?)",
    ]


def test_mqtt_section_is_validated_by_the_publishing_layer() -> None:
    assert errors("[mqtt]\nport = 0\n" + ONE_METER) == [
        f"{FILE}: mqtt.port: should be greater than or equal to 1, got the number 0"
    ]


def test_all_problems_reported_at_once_in_file_order() -> None:
    text = (
        "[mqtt]\nhots = 1\n"
        + meter(name="house", source="/dev/a", ean="1")
        + meter(name="house", role="secondary", source="/dev/b", check_crc=1)
    )
    assert errors(text) == [
        f"{FILE}: mqtt.hots: unknown key (did you mean 'host'?)",
        f"{FILE}: meters[0].ean: must be 18 digits, got 1",
        f"{FILE}: meters[1].check_crc: should be true or false, got the number 1",
        f"{FILE}: meters[1].name: same name as meters[0] (house)",
    ]


# -- the file itself -------------------------------------------------------------------


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("nope.toml", {})
    assert info.value.lines == ["nope.toml: cannot read: No such file or directory"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path), {})
    assert info.value.lines == [f"{tmp_path}: cannot read: Is a directory"]


def test_toml_syntax_error() -> None:
    assert errors('[[meters]]\nname = "house\n') == [
        f"{FILE}: TOML syntax error: illegal character '\\n' (at line 2, column 14)"
    ]


def test_not_utf8() -> None:
    Path(FILE).write_bytes(b'[mqtt]\nhost = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config(FILE, {})
    assert info.value.lines == [f"{FILE}: not UTF-8 text (byte 15)"]


# -- secrets from the environment ------------------------------------------------------


def test_environment_overrides_secrets() -> None:
    environ = {
        "P1DAEMON_MQTT_USERNAME": "meter",
        "P1DAEMON_MQTT_PASSWORD": "s3cret",
        "P1DAEMON_METER_CAR_PORT_KEY": "0123456789abcdef0123456789abcdef",
    }
    text = (
        '[mqtt]\nusername = "file-user"\npassword_file = "/etc/p1daemon/pw"\n'
        + meter(name="house", source="/dev/a")
        + meter(name="car-port", role="secondary", source="/dev/b")
    )
    config = load_config(write(text), environ)
    assert config.mqtt.username == "meter"
    assert config.mqtt.password is not None
    assert config.mqtt.password.get_secret_value() == "s3cret"
    assert config.mqtt.password_file is None
    assert config.meters[0].key is None
    assert config.meters[1].key_bytes == bytes.fromhex("0123456789abcdef0123456789abcdef")
    assert sorted(config.secret_values()) == ["0123456789abcdef0123456789abcdef", "s3cret"]


def test_bad_secret_from_environment_names_the_variable() -> None:
    environ = {"P1DAEMON_METER_HOUSE_KEY": "xyz"}
    assert errors(ONE_METER, environ) == [
        f"{FILE}: meters[0].key (from P1DAEMON_METER_HOUSE_KEY): must be 32 hexadecimal "
        "digits, got 3 characters"
    ]


def test_empty_environment_variable_is_ignored() -> None:
    config = load_config(write(ONE_METER), {"P1DAEMON_MQTT_PASSWORD": ""})
    assert config.mqtt.password is None


# -- effective configuration ------------------------------------------------------------


def test_render_masks_secrets_and_loads_back() -> None:
    key = "0123456789ABCDEF0123456789ABCDEF"
    text = (
        '[mqtt]\nusername = "u"\npassword = "hunter2"\n'
        + meter(name="house", source="replay:house.txt", ean=VALID_EAN, key=key)
        + 'tariff_labels = { t1 = "low" }\n'
        + meter(name="carport", role="secondary", source="socket://bridge:23", ean=OTHER_EAN)
    )
    config = load_config(write(text), {})
    rendered = render_config(config, FILE)
    assert "hunter2" not in rendered
    assert key not in rendered and key.lower() not in rendered
    assert 'password = "********"' in rendered
    assert 'key = "********"' in rendered
    assert 'tariff_labels = { t1 = "low" }' in rendered
    # Apart from the masked secrets, the output is the same configuration.
    unmasked = {
        "password": "hunter2",
        "key": key,
        "auth_key": "00112233445566778899AABBCCDDEEFF",
    }
    lines = [
        f'{line.split(" = ")[0]} = "{unmasked[line.split(" = ")[0]]}"'
        if line.endswith('"********"')
        else line
        for line in rendered.splitlines()
    ]
    Path("again.toml").write_text("\n".join(lines), encoding="utf-8")
    assert load_config("again.toml", {}) == config


# -- GS1 check digit --------------------------------------------------------------------


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_ean_with_computed_check_digit_is_valid(body: str) -> None:
    assert ean_problem(body + str(gs1_check_digit(body))) is None


@given(
    st.text(alphabet="0123456789", min_size=17, max_size=17),
    st.integers(0, 16),
    st.integers(1, 9),
)
def test_any_single_digit_typo_is_caught(body: str, position: int, delta: int) -> None:
    ean = body + str(gs1_check_digit(body))
    typo = ean[:position] + str((int(ean[position]) + delta) % 10) + ean[position + 1 :]
    assert ean_problem(typo) is not None


def test_relative_buffer_and_mqtt_file_paths_resolve_against_the_config_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("x")  # named files must exist (rules.py)
    config = load_config(
        write(
            ONE_METER
            + '[buffer]\npath = "state/outbox.db"\n'
            + '[mqtt]\ntls = true\nca_file = "certs/ca.pem"\n'
        ),
        {},
    )
    assert config.buffer.path == str(tmp_path / "state" / "outbox.db")
    assert config.mqtt.ca_file == tmp_path / "certs" / "ca.pem"


# -- Home Assistant, site and export cap ----------------------------------------------------


def test_homeassistant_site_and_export_limit_settings() -> None:
    text = (
        '[homeassistant]\ndiscovery = true\nprefix = "ha"\n'
        '[site]\ntopology = "series"\ntimezone = "Europe/Brussels"\n'
        + ONE_METER
        + "export_limit_kw = 2.5\nexport_limit_hold_s = 30\n"
    )
    config = load_config(write(text), {})
    assert config.homeassistant.discovery and config.homeassistant.prefix == "ha"
    assert config.site.topology == "series" and config.site.timezone == "Europe/Brussels"
    (house,) = config.meters
    assert (house.export_limit_kw, house.export_limit_hold_s) == (2.5, 30.0)
    defaults = load_config(write(ONE_METER), {})
    assert not defaults.homeassistant.discovery and defaults.site.topology == "parallel"
    assert defaults.meters[0].export_limit_kw is None


def test_export_limit_problems() -> None:
    assert errors(ONE_METER + "export_limit_hold_s = 30\n") == [
        "p1daemon.toml: meters[0].export_limit_hold_s: only applies together with "
        "export_limit_kw (the export power limit)"
    ]
    (line,) = errors(ONE_METER + "export_limit_kw = 0\n")
    assert (
        line.startswith("p1daemon.toml: meters[0].export_limit_kw: ") and "greater than 0" in line
    )
    (line,) = errors(ONE_METER + "export_limit_kw = 1\nexport_limit_hold_s = 90000\n")
    assert line.startswith("p1daemon.toml: meters[0].export_limit_hold_s: ")


def test_site_and_homeassistant_problems() -> None:
    assert errors('[site]\ntimezone = "Mars/Olympus_Mons"\n' + ONE_METER) == [
        "p1daemon.toml: site.timezone: unknown time zone 'Mars/Olympus_Mons'"
    ]
    (line,) = errors('[site]\ntopology = "ring"\n' + ONE_METER)
    assert line.startswith("p1daemon.toml: site.topology: ")
    (line,) = errors('[homeassistant]\nprefix = "ha/"\n' + ONE_METER)
    assert line.startswith("p1daemon.toml: homeassistant.prefix: must be non-empty")
    clash = '[mqtt]\ntopic_prefix = "ha"\n[homeassistant]\ndiscovery = true\nprefix = "ha"\n'
    assert errors(clash + ONE_METER) == [
        "p1daemon.toml: homeassistant.prefix: [homeassistant] prefix and [mqtt] topic_prefix "
        "must differ, both 'ha'"
    ]
    # Without discovery nothing listens on the Home Assistant prefix: no clash.
    load_config(write(clash.replace("discovery = true", "discovery = false") + ONE_METER), {})
