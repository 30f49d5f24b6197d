"""Import boundaries of the commands (issue 16): what each one may not import.

On a Raspberry Pi Zero 2 W every module costs start-up time and memory, and a module-level
import added anywhere (the CLI, the config model, the builder) silently makes every
command pay for the whole daemon again. These tests run each command in a fresh
interpreter and look at `sys.modules` afterwards; the time itself is measured in
bench/bench_startup.py, never here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config/p1daemon.example.toml"
TELEGRAM = REPO / "fixtures/be/emucs_capacity.txt"

# The daemon's heavy parts: MQTT, TLS, SQLite, Smarty's cipher, the serial port.
HEAVY = ("paho", "ssl", "sqlite3", "cryptography", "serial")


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code` (stdout is discarded)."""
    script = textwrap.dedent(
        """
        import contextlib, io, json, sys
        with contextlib.redirect_stdout(io.StringIO()):
            try:
        {code}
            except SystemExit:
                pass
        print(json.dumps(sorted(sys.modules)))
        """
    ).format(code=textwrap.indent(textwrap.dedent(code), " " * 8))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def command_modules(*args: str) -> set[str]:
    return modules_after(f"from p1daemon.cli import main\nmain({list(args)!r})")


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def under(modules: set[str], prefix: str) -> set[str]:
    return {m for m in modules if m == prefix or m.startswith(prefix + ".")}


def test_the_help_imports_click_and_the_cli_alone() -> None:
    modules = command_modules("--help")
    assert "p1daemon.cli" in modules  # the test ran what it says
    assert top_level(modules).isdisjoint({*HEAVY, "pydantic", "pydantic_core"})
    assert under(modules, "p1daemon.views") == set()
    assert under(modules, "p1daemon.config") == set()
    assert under(modules, "p1daemon.publish") == set()
    assert under(modules, "p1daemon.report") == set()
    assert "p1daemon.daemon.app" not in modules


def test_parse_needs_no_broker_config_or_views() -> None:
    modules = command_modules("parse", str(TELEGRAM))
    assert "p1daemon.parse.stream" in modules
    assert "p1daemon.reading.encode" in modules  # it wrote the reading's JSON
    assert top_level(modules).isdisjoint(HEAVY)
    # The reading document is plain Python: parse builds no pydantic model at all.
    assert "pydantic.main" not in modules
    assert under(modules, "p1daemon.config") == set()
    assert under(modules, "p1daemon.views") == set()
    assert under(modules, "p1daemon.publish") == set()
    assert "p1daemon.daemon.app" not in modules


def test_check_config_needs_no_broker_client_daemon_or_processors() -> None:
    modules = command_modules("check-config", str(EXAMPLE))
    assert "p1daemon.config.model" in modules
    assert top_level(modules).isdisjoint({"paho", "ssl", "cryptography", "serial"})
    assert "p1daemon.reading.model" not in modules  # the config needs the role only
    assert "p1daemon.daemon.app" not in modules
    assert "p1daemon.publish.client" not in modules
    # The sections' settings, never their processors.
    views = under(modules, "p1daemon.views")
    assert views, "the example configures views: their settings are read"
    assert all(
        m.rsplit(".", 1)[-1]
        in ("settings", "settings_schema", "energy", "history", "homeassistant", "views")
        for m in views
    ), views


def test_check_config_imports_only_what_this_file_and_its_output_need() -> None:
    """What check-config of a valid file without `serve` keys leaves out (issue 16): the
    framer (the config copies its default size), the key-guessing of error messages,
    the port check of `serve` and the --summary view."""
    modules = command_modules("check-config", str(EXAMPLE))
    assert "p1daemon.config.render" in modules  # the test ran what it says
    assert "p1daemon.frame.framer" not in modules
    assert "p1daemon.frame.crc" not in modules
    assert "difflib" not in modules
    assert under(modules, "p1daemon.serve") == set()  # no meter serves
    assert "p1daemon.source.demo_profile" not in modules  # no demo: source
    assert "p1daemon.service.summary" not in modules
    summary = command_modules("check-config", "--summary", str(EXAMPLE))
    assert "p1daemon.service.summary" in summary
    assert "p1daemon.config.render" not in summary


def test_the_config_dataclasses_need_no_pydantic() -> None:
    """What the daemon holds while it runs is plain dataclasses (issue 16: pydantic and
    its validators are ~9 MB the daemon never needs after start-up)."""
    modules = modules_after("""
        from p1daemon.config.model import SECTIONS, Config
        from p1daemon.report.statement_settings import StatementSettings
        from p1daemon.views.history.settings import HistorySettings
    """)
    assert "p1daemon.config.model" in modules
    assert top_level(modules).isdisjoint({"pydantic", "pydantic_core"})


def test_making_the_config_models_builds_no_validator() -> None:
    """`defer_build`: a validator is made on first use (Config's, with every section
    inline), never one per model when the models are made."""
    code = """
        from p1daemon.config.model import SECTIONS, Config
        from p1daemon.config.schema import model_of
        from p1daemon.report.statement_settings import StatementSettings
        from p1daemon.views.history.settings import HistorySettings
        tables = [Config, StatementSettings, HistorySettings, *SECTIONS.values()]
        models = [model_of(table) for table in tables]
        built = [m.__name__ for m in models if m.__pydantic_complete__]
        assert built == [], built
    """
    modules_after(code)


def test_report_needs_no_parser_energy_views_or_broker(tmp_path: Path) -> None:
    """`report` reads the history: the capture importer (parser, energy tracker) is
    `history import`'s alone."""
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        f'[history]\npath = "{tmp_path / "none.db"}"\n\n'
        '[[meters]]\nname = "house"\nsource = "/dev/ttyUSB0"\n',
        encoding="utf-8",
    )
    modules = command_modules("report", "--config", str(config))  # no history: one line
    assert "p1daemon.report.command" in modules  # the test ran what it says
    assert "p1daemon.views.history.importer" not in modules
    assert "p1daemon.views.energy.tracker" not in modules
    assert under(modules, "p1daemon.parse") == set()
    assert top_level(modules).isdisjoint({"paho", "ssl", "cryptography", "serial"})


def test_watch_without_a_config_builds_no_config_model() -> None:
    with socket.socket() as probe:  # a port nothing listens on: watch gives up at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    modules = command_modules("watch", "--once", "--port", str(port))
    assert "p1daemon.watch.app" in modules  # the test ran what it says
    assert "p1daemon.publish.settings" in modules
    # The settings dataclasses only: no configuration is validated, so no pydantic.
    assert under(modules, "p1daemon.config") <= {
        "p1daemon.config",
        "p1daemon.config.secret",
        "p1daemon.config.section",
    }
    assert "pydantic" not in top_level(modules)


def test_the_builder_imports_only_the_processors_a_configuration_wants(tmp_path: Path) -> None:
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        f"""
[buffer]
path = "{tmp_path / "outbox.db"}"

[homeassistant]
discovery = false

[history]
enabled = false

[[meters]]
name = "house"
role = "primary"
capacity = "off"
source = "replay:{TELEGRAM}"
""",
        encoding="utf-8",
    )
    code = f"""
        from p1daemon.config.loader import load_config
        from p1daemon.daemon.builder import build
        dispatcher = build(load_config({str(config)!r}), [])
        print(sorted(p.name for p in dispatcher.processors))
        assert [p.name for p in dispatcher.processors] == ["energy"], dispatcher.processors
    """
    modules = modules_after(code)
    assert "p1daemon.views.energy.processor" in modules
    assert under(modules, "p1daemon.views.homeassistant") <= {
        "p1daemon.views.homeassistant",
        "p1daemon.views.homeassistant.settings",
        "p1daemon.views.homeassistant.settings_schema",
    }
    assert "p1daemon.views.capacity.processor" not in modules
    assert "p1daemon.views.history.processor" not in modules
    assert top_level(modules).isdisjoint({"paho", "sqlite3", "ssl", "cryptography"})


def test_the_builder_still_builds_every_processor_that_is_wanted(tmp_path: Path) -> None:
    """The lazy factories build what the eager ones did (a proof they can fail)."""
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        f"""
[buffer]
path = "{tmp_path / "outbox.db"}"

[homeassistant]
discovery = true

[history]
enabled = true
path = "{tmp_path / "history.db"}"

[[meters]]
name = "house"
role = "primary"
capacity = "on"
source = "replay:{TELEGRAM}"
""",
        encoding="utf-8",
    )
    from p1daemon.config.loader import load_config
    from p1daemon.daemon.builder import build

    dispatcher = build(load_config(str(config)), [])
    names = [p.name for p in dispatcher.processors]
    assert names == ["homeassistant", "energy", "capacity", "history"]


def test_the_lazy_commands_list_their_own_short_help() -> None:
    """`p1daemon --help` lists report and history without importing them: the text it
    shows must be what the commands say themselves."""
    from p1daemon.cli import _LAZY_COMMANDS
    from p1daemon.report.command import history, report

    for command in (report, history):
        assert command.name is not None
        module, attribute, text = _LAZY_COMMANDS[command.name]
        assert (module, attribute) == (command.callback.__module__, command.callback.__name__)
        stand_in = click.Command(command.name, help=text)
        for limit in (40, 60, 1000):
            assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_the_listing_of_commands_is_complete() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "p1daemon", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    commands = result.stdout.split("Commands:", 1)[1].split()
    for name in ("check-config", "history", "parse", "probe", "report", "run", "watch"):
        assert name in commands


def test_a_source_loads_only_its_own_kind(tmp_path: Path) -> None:
    """A replaying daemon loads no serial port (nor pyserial), TCP client or demo meter; a
    serial meter loads neither the replay nor the demo profiles."""
    config = tmp_path / "p1daemon.toml"
    config.write_text(
        f'[[meters]]\nname = "house"\nsource = "replay:{TELEGRAM}"\n\n'
        '[[meters]]\nname = "pv"\nrole = "secondary"\nean = "871685900012345681"\n'
        'source = "/dev/ttyUSB7"\n',
        encoding="utf-8",
    )
    replay = modules_after(
        f"""
        from p1daemon.config.loader import load_config
        from p1daemon.source.factory import source_for
        print(type(source_for(load_config({str(config)!r}).meters[0])).__name__)
        """
    )
    assert "p1daemon.source.replay" in replay  # the test ran what it says
    assert {"serial", "p1daemon.source.serial_port", "p1daemon.source.autobaud"}.isdisjoint(replay)
    assert {
        "p1daemon.source.tcp",
        "p1daemon.source.demo",
        "p1daemon.source.demo_profile",
    }.isdisjoint(replay)
    port = modules_after(
        f"""
        from p1daemon.config.loader import load_config
        from p1daemon.source.factory import source_for
        source_for(load_config({str(config)!r}).meters[1])
        """
    )
    assert "p1daemon.source.serial_port" in port
    assert {"p1daemon.source.replay", "p1daemon.source.demo_profile"}.isdisjoint(port)
