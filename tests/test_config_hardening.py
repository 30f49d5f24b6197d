"""What abuse of the configuration file found (issue 9, items 18-20), through the real CLI.

Secrets written with the wrong type, short secrets, deeply nested TOML, a byte-order
mark, certificate and password files that are not there, and strings where numbers or
booleans belong: each goes through `p1daemon check-config` (click's runner, the same
code path as the installed command), and where the issue names it through `run` in a
subprocess or through the daemon's reload, whose refusal lines land in the journal.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pydantic import SecretStr
from test_daemon_app import RecordingHooks
from test_daemon_support import CollectingSink, telegram, wait_until

from p1daemon.cli import main
from p1daemon.config import load_config
from p1daemon.config.model import MeterConfig
from p1daemon.config.schema import model_of
from p1daemon.config.section import Section
from p1daemon.daemon.app import Daemon
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.service.redact import MIN_SECRET_LENGTH, Redactor
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

REPO = Path(__file__).resolve().parents[1]
ONE_METER = '[[meters]]\nname = "house"\nsource = "replay:house.txt"\n'
FAST = "replay_interval_s = 0\n"


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("P1DAEMON_MQTT_PASSWORD", raising=False)
    monkeypatch.delenv("P1DAEMON_MQTT_USERNAME", raising=False)
    monkeypatch.delenv("P1DAEMON_METER_HOUSE_KEY", raising=False)
    (tmp_path / "house.txt").write_bytes(b"".join(telegram(seq) for seq in range(1, 4)))
    return tmp_path


def check_config(text: str | bytes, name: str = "p1daemon.toml") -> Result:
    path = Path(name)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(main, ["check-config", name])


def refused(result: Result) -> list[str]:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()


def run_p1daemon(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P1DAEMON_")}
    env.pop("JOURNAL_STREAM", None)
    return subprocess.run(
        [sys.executable, "-m", "p1daemon", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        timeout=30,
    )


# -- 18: the value of a secret key is never echoed ------------------------------------------


def _mentions_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_mentions_secret(arg) for arg in typing.get_args(annotation))


SECTIONS: dict[str, type[Section]] = {
    "mqtt": MqttSettings,
    "buffer": BufferSettings,
    "homeassistant": HomeAssistantSettings,
    "site": SiteSettings,
    "meters": MeterConfig,
}
# Found from the validating models, so a secret field added later is covered (or fails here).
SECRET_FIELDS = [
    (section, name)
    for section, model in SECTIONS.items()
    for name, field in model_of(model).model_fields.items()
    if _mentions_secret(field.annotation)
]


def test_the_models_have_the_secrets_the_issue_names() -> None:
    assert sorted(SECRET_FIELDS) == [
        ("meters", "auth_key"),
        ("meters", "key"),
        ("mqtt", "password"),
    ]


def _with_secret(section: str, name: str, value: str) -> str:
    if section == "mqtt":
        return f'[mqtt]\nusername = "u"\n{name} = {value}\n' + ONE_METER
    return ONE_METER + f"{name} = {value}\n"


def _location(section: str, name: str) -> str:
    return f"mqtt.{name}" if section == "mqtt" else f"meters[0].{name}"


@pytest.mark.parametrize(("section", "name"), SECRET_FIELDS)
@pytest.mark.parametrize(
    ("value", "shape"),
    [
        ("987654321", "a number"),
        ("98765.4321", "a number"),
        ("true", "a boolean"),
        ("[987654321]", "a list"),
        ("1987-06-05", "a date"),
    ],
)
def test_a_secret_of_the_wrong_type_is_not_echoed_by_check_config(
    folder: Path, section: str, name: str, value: str, shape: str
) -> None:
    lines = refused(check_config(_with_secret(section, name, value)))
    assert lines == [
        f"p1daemon.toml: {_location(section, name)}: should be a string in quotes, got {shape} "
        "(value not shown: it is a secret)"
    ]


@pytest.mark.parametrize(("section", "name"), SECRET_FIELDS)
def test_a_secret_that_fails_its_own_check_is_not_echoed(
    folder: Path, section: str, name: str
) -> None:
    # Strings reach the field's own validator (hex check for keys): still not shown.
    result = check_config(_with_secret(section, name, '"zz9876543210zz"'))
    if section == "mqtt":  # any string is a password
        assert result.exit_code == 0, result.output
        assert "zz9876543210zz" not in result.output
        return
    assert "9876543210" not in result.output
    assert refused(result) == [
        f"p1daemon.toml: {_location(section, name)}: must be 32 hexadecimal digits, "
        "got 14 characters"
    ]


def test_run_does_not_echo_a_secret_of_the_wrong_type(folder: Path) -> None:
    (folder / "p1daemon.toml").write_text(
        ONE_METER + "key = 123456789\n" + "auth_key = 123456789\n", encoding="utf-8"
    )
    done = run_p1daemon("run", "--config", "p1daemon.toml", "--stdout", cwd=folder)
    assert done.returncode == 1
    assert "123456789" not in done.stderr + done.stdout
    assert done.stderr.splitlines() == [
        "p1daemon.toml: meters[0].key: should be a string in quotes, got a number "
        "(value not shown: it is a secret)",
        "p1daemon.toml: meters[0].auth_key: should be a string in quotes, got a number "
        "(value not shown: it is a secret)",
    ]


@pytest.fixture
def background() -> Iterator[Callable[[Daemon], threading.Thread]]:
    threads: list[tuple[Daemon, threading.Thread]] = []

    def start(daemon: Daemon) -> threading.Thread:
        thread = threading.Thread(target=lambda: daemon.run(handle_signals=False))
        thread.start()
        threads.append((daemon, thread))
        return thread

    yield start
    for daemon, thread in threads:
        daemon.request_stop()
        thread.join(5)
        assert not thread.is_alive()


def reload_errors(
    folder: Path,
    new_text: str | bytes,
    background: Callable[[Daemon], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> list[str]:
    """Start a daemon on a good file, swap in `new_text`, reload; the refusal's lines."""
    path = folder / "p1daemon.toml"
    path.write_text(ONE_METER + "replay_loop = true\nreplay_interval_s = 0.01\n")
    sink, hooks = CollectingSink(), RecordingHooks()
    daemon = Daemon(
        load_config(path, {}), sink, hooks, reload=lambda: load_config(path, {}), tick_s=0.02
    )
    background(daemon)
    assert wait_until(lambda: len(sink.of("house")) >= 2)
    if isinstance(new_text, bytes):
        path.write_bytes(new_text)
    else:
        path.write_text(new_text, encoding="utf-8")
    caplog.clear()
    daemon.request_reload()
    assert wait_until(lambda: hooks.events.count("reloaded") == 1)
    count = len(sink.of("house"))
    assert wait_until(lambda: len(sink.of("house")) > count)  # the old configuration runs on
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_refused_reload_does_not_log_a_secret_of_the_wrong_type(
    folder: Path,
    background: Callable[[Daemon], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = '[mqtt]\nusername = "u"\npassword = 987654321\n' + ONE_METER + "key = 123456789\n"
    path = folder / "p1daemon.toml"
    errors = reload_errors(folder, text, background, caplog)
    assert errors == [
        f"reload refused: {path}: mqtt.password: should be a string in quotes, got a number "
        "(value not shown: it is a secret)",
        f"reload refused: {path}: meters[0].key: should be a string in quotes, got a number "
        "(value not shown: it is a secret)",
        "reload refused: the previous configuration keeps running",
    ]


# -- 19: whole values only, and what happens to short secrets -------------------------------


def test_redaction_masks_whole_values_not_pieces_of_words() -> None:
    redact = Redactor(["meter", "#pw!", "0123456789ABCDEF0123456789ABCDEF"])
    assert redact("started 1 meter reader(s)") == "started 1 *** reader(s)"
    assert redact("parameters metering meter_1 1meter") == "parameters metering meter_1 1meter"
    assert redact("password=meter; (meter) 'meter' meter.") == ("password=***; (***) '***' ***.")
    # A secret that begins or ends with punctuation is bounded by its own edges.
    assert redact("x#pw!y and %23pw%21") == "x***y and ***"
    assert redact("key 0123456789abcdef0123456789abcdef.") == "key ***."


@pytest.mark.parametrize("secret", ["3", "s", "ab", "x1y"])
def test_secrets_too_short_to_mask_are_left_alone(secret: str) -> None:
    assert len(secret) < MIN_SECRET_LENGTH
    redact = Redactor([secret, "hunter22"])
    line = f"started 3 meter reader(s) as {secret}: ab x1y, hunter22"
    assert redact(line) == f"started 3 meter reader(s) as {secret}: ab x1y, ***"


def test_a_one_character_password_does_not_garble_the_log_and_is_warned_about(
    folder: Path,
) -> None:
    (folder / "p1daemon.toml").write_text(
        '[mqtt]\nusername = "u"\npassword = "1"\n' + ONE_METER + FAST, encoding="utf-8"
    )
    done = run_p1daemon("run", "--config", "p1daemon.toml", "--stdout", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "started 1 meter reader(s)" in done.stderr
    assert "***" not in done.stderr
    assert (
        "mqtt.password is shorter than 4 characters: too short to be masked in log lines; "
        "use a longer one"
    ) in done.stderr


def test_a_secret_inside_a_word_is_not_masked_in_the_log(folder: Path) -> None:
    (folder / "p1daemon.toml").write_text(
        '[mqtt]\nusername = "u"\npassword = "eter"\n' + ONE_METER + FAST, encoding="utf-8"
    )
    done = run_p1daemon("run", "--config", "p1daemon.toml", "--stdout", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "started 1 meter reader(s)" in done.stderr
    assert "shorter than" not in done.stderr


def test_check_config_warns_about_a_short_secret_without_failing(folder: Path) -> None:
    result = check_config('[mqtt]\nusername = "u"\npassword = "ab"\n' + ONE_METER)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "p1daemon.toml: warning: mqtt.password is shorter than 4 characters: too short to be "
        "masked in log lines; use a longer one"
    ]
    assert 'password = "********"' in result.stdout


def test_a_short_password_from_a_password_file_is_warned_about_too(folder: Path) -> None:
    (folder / "pw").write_text("ab\n")
    result = check_config('[mqtt]\nusername = "u"\npassword_file = "pw"\n' + ONE_METER)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "p1daemon.toml: warning: mqtt.password_file holds a password shorter than 4 "
        "characters: too short to be masked in log lines; use a longer one"
    ]


def test_a_password_from_a_password_file_is_among_the_secrets_to_mask(folder: Path) -> None:
    (folder / "pw").write_text("pass-from-file\n")
    (folder / "p1daemon.toml").write_text(
        '[mqtt]\nusername = "u"\npassword_file = "pw"\n' + ONE_METER
    )
    assert load_config(folder / "p1daemon.toml", {}).secret_values() == ["pass-from-file"]


# -- 20: nesting, byte-order mark, files that are not there, strict types ------------------


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize(
    "text",
    [
        f"x = {_nested(5000)}\n",
        ONE_METER + f"tariff_labels = {_nested(2000)}\n",
        ONE_METER + "tariff_labels = " + "{t1 = " * 3000 + '"x"' + "}" * 3000 + "\n",
    ],
)
def test_deeply_nested_toml_is_one_line(folder: Path, text: str) -> None:
    assert refused(check_config(text)) == [
        "p1daemon.toml: TOML nested too deeply: arrays or inline tables inside each other "
        "hundreds of levels deep"
    ]


def test_deeply_nested_toml_refuses_a_reload_in_one_line(
    folder: Path,
    background: Callable[[Daemon], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = folder / "p1daemon.toml"
    errors = reload_errors(folder, f"x = {_nested(5000)}\n", background, caplog)
    assert errors == [
        f"reload refused: {path}: TOML nested too deeply: arrays or inline tables inside each "
        "other hundreds of levels deep",
        "reload refused: the previous configuration keeps running",
    ]


def test_nesting_that_python_can_parse_still_gets_ordinary_errors(folder: Path) -> None:
    assert refused(check_config(ONE_METER + f"tariff_labels = {_nested(100)}\n")) == [
        "p1daemon.toml: meters[0].tariff_labels: should be a table, got a list"
    ]


def test_a_utf8_byte_order_mark_is_accepted(folder: Path) -> None:
    result = check_config(b"\xef\xbb\xbf" + ONE_METER.encode())
    assert result.exit_code == 0, result.output
    assert 'name = "house"' in result.stdout


def test_after_a_byte_order_mark_bad_bytes_are_counted_from_the_file_start(folder: Path) -> None:
    assert refused(check_config(b'\xef\xbb\xbf[mqtt]\nhost = "\xff"\n' + ONE_METER.encode())) == [
        "p1daemon.toml: not UTF-8 text (byte 18)"
    ]


def test_a_byte_order_mark_in_a_reloaded_file_is_fine(
    folder: Path,
    background: Callable[[Daemon], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="p1daemon")
    text = b"\xef\xbb\xbf" + ONE_METER.encode() + b"replay_loop = true\nreplay_interval_s = 0.02\n"
    assert reload_errors(folder, text, background, caplog) == []
    assert "configuration reloaded: 1 meter(s)" in caplog.messages


TLS_FILES = ("ca_file", "cert_file", "key_file")


def _mqtt_with(key: str, value: str) -> str:
    if key == "password_file":
        return f'[mqtt]\nusername = "u"\npassword_file = "{value}"\n' + ONE_METER
    lines = ["[mqtt]", "tls = true", f'{key} = "{value}"']
    if key == "cert_file":
        lines.append('key_file = "present.pem"')
    if key == "key_file":
        lines.append('cert_file = "present.pem"')
    return "\n".join(lines) + "\n" + ONE_METER


@pytest.mark.parametrize("key", [*TLS_FILES, "password_file"])
def test_a_missing_file_is_named_by_check_config(folder: Path, key: str) -> None:
    (folder / "present.pem").write_text("x")
    assert refused(check_config(_mqtt_with(key, "certs/nope.pem"))) == [
        f"p1daemon.toml: mqtt.{key}: no such file: {folder / 'certs' / 'nope.pem'}"
    ]
    assert refused(check_config(_mqtt_with(key, "/x/y"))) == [
        f"p1daemon.toml: mqtt.{key}: no such file: /x/y"
    ]


@pytest.mark.parametrize("key", [*TLS_FILES, "password_file"])
def test_a_folder_instead_of_a_file_is_named(folder: Path, key: str) -> None:
    (folder / "present.pem").write_text("x")
    (folder / "certs").mkdir()
    assert refused(check_config(_mqtt_with(key, "certs"))) == [
        f"p1daemon.toml: mqtt.{key}: not a file: {folder / 'certs'}"
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file: cannot make one unreadable")
@pytest.mark.parametrize("key", [*TLS_FILES, "password_file"])
def test_an_unreadable_file_is_named(folder: Path, key: str) -> None:
    (folder / "present.pem").write_text("x")
    locked = folder / "locked.pem"
    locked.write_text("x")
    locked.chmod(0)
    assert refused(check_config(_mqtt_with(key, "locked.pem"))) == [
        f"p1daemon.toml: mqtt.{key}: cannot read {locked}: Permission denied"
    ]


def test_a_password_file_overridden_by_the_environment_need_not_exist(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P1DAEMON_MQTT_PASSWORD", "from-the-environment")
    result = check_config(_mqtt_with("password_file", "/x/y"))
    assert result.exit_code == 0, result.output


def test_run_names_a_missing_ca_file(folder: Path) -> None:
    (folder / "p1daemon.toml").write_text(_mqtt_with("ca_file", "/x/y"), encoding="utf-8")
    done = run_p1daemon("run", "--config", "p1daemon.toml", cwd=folder)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["p1daemon.toml: mqtt.ca_file: no such file: /x/y"]


def test_a_reload_names_a_missing_ca_file(
    folder: Path,
    background: Callable[[Daemon], threading.Thread],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = folder / "p1daemon.toml"
    assert reload_errors(folder, _mqtt_with("ca_file", "/x/y"), background, caplog) == [
        f"reload refused: {path}: mqtt.ca_file: no such file: /x/y",
        "reload refused: the previous configuration keeps running",
    ]


@pytest.mark.parametrize(
    ("table", "text", "line"),
    [
        ("mqtt", 'port = "1883"', "mqtt.port: should be a whole number, got the string '1883'"),
        ("mqtt", 'tls = "yes"', "mqtt.tls: should be true or false, got the string 'yes'"),
        (
            "mqtt",
            "keepalive = 60.5",
            "mqtt.keepalive: should be a whole number, got the number 60.5",
        ),
        ("mqtt", "tls = 1", "mqtt.tls: should be true or false, got the number 1"),
        (
            "mqtt",
            'reconnect_max_delay_s = "60"',
            "mqtt.reconnect_max_delay_s: should be a number, got the string '60'",
        ),
        ("mqtt", "host = 127", "mqtt.host: should be a string in quotes, got the number 127"),
        ("mqtt", "ca_file = 5", "mqtt.ca_file: should be a file path in quotes, got the number 5"),
        ("buffer", 'max_mb = "64"', "buffer.max_mb: should be a number, got the string '64'"),
        (
            "homeassistant",
            'discovery = "on"',
            "homeassistant.discovery: should be true or false, got the string 'on'",
        ),
        (
            "homeassistant",
            'expire_after_s = "120"',
            "homeassistant.expire_after_s: should be a whole number, got the string '120'",
        ),
        (
            "site",
            'stale_after_s = "60"',
            "site.stale_after_s: should be a number, got the string '60'",
        ),
        ("site", "stale_after_s = true", "site.stale_after_s: should be a number, got true"),
    ],
)
def test_strings_are_not_numbers_or_booleans_in_any_table(
    folder: Path, table: str, text: str, line: str
) -> None:
    assert refused(check_config(f"[{table}]\n{text}\n" + ONE_METER)) == [f"p1daemon.toml: {line}"]


def _plain_kind(annotation: Any) -> type | None:
    """int, float or bool when that is what the field holds (None allowed), else None."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return _plain_kind(args[0]) if len(args) == 1 else None
    if typing.get_origin(annotation) is typing.Annotated:
        return _plain_kind(args[0])
    return annotation if annotation in (int, float, bool) else None


TYPED_FIELDS = [
    (section, name, kind)
    for section, model in SECTIONS.items()
    for name, field in model_of(model).model_fields.items()
    if (kind := _plain_kind(field.annotation)) is not None
]


def test_the_strict_check_covers_a_reasonable_set_of_fields() -> None:
    assert len(TYPED_FIELDS) > 25
    assert {("mqtt", "port", int), ("mqtt", "tls", bool), ("meters", "check_crc", bool)} <= set(
        TYPED_FIELDS
    )


@pytest.mark.parametrize(("section", "name", "kind"), TYPED_FIELDS)
def test_every_number_and_boolean_key_refuses_a_string(
    folder: Path, section: str, name: str, kind: type
) -> None:
    value = {int: '"5"', float: '"5.5"', bool: '"true"'}[kind]
    if section == "meters":
        text, where = ONE_METER + f"{name} = {value}\n", f"meters[0].{name}"
    else:
        text, where = f"[{section}]\n{name} = {value}\n" + ONE_METER, f"{section}.{name}"
    expected = {int: "a whole number", float: "a number", bool: "true or false"}[kind]
    lines = refused(check_config(text))
    shown = value.replace('"', "'")
    assert lines == [f"p1daemon.toml: {where}: should be {expected}, got the string {shown}"]


def test_the_shipped_files_still_pass_check_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    for name in ("config/p1daemon.example.toml", "config/demo.toml"):
        if name.endswith("demo.toml") and not (REPO / "fixtures" / "demo").is_dir():
            continue
        result = CliRunner().invoke(main, ["check-config", name])
        assert result.exit_code == 0, result.output
        assert result.stderr == ""
