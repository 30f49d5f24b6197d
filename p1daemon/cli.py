"""Command line: `p1daemon run`, `check-config`, `probe` and `parse`.

Every command turns bad input into one clear line on stderr and an exit status; a
Python traceback is a bug, never a way of reporting a problem to the user.
"""

from __future__ import annotations

import logging
import sys
from typing import BinaryIO, NoReturn

import click

from p1daemon import __version__
from p1daemon.config.errors import ConfigError
from p1daemon.config.loader import load_config
from p1daemon.config.model import Config
from p1daemon.config.render import render_config
from p1daemon.daemon.app import Daemon
from p1daemon.daemon.probe import ProbeError, describe, probe
from p1daemon.daemon.sink import ReadingSink
from p1daemon.daemon.stdout_sink import JsonLinesSink
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped
from p1daemon.frame.smarty import SMARTY_AUTH_KEY, InvalidKeyError, parse_key
from p1daemon.parse.stream import ReadingStream
from p1daemon.publish.client import MqttSetupError
from p1daemon.publish.outbox import OutboxUnavailable
from p1daemon.publish.sink import MqttSink
from p1daemon.service.hooks import SystemdHooks
from p1daemon.service.logsetup import setup_logging
from p1daemon.source.factory import SourceOptions
from p1daemon.source.line import DSMR2, LineSettings
from p1daemon.source.spec import SourceSpecError, parse_source

_CHUNK = 64 * 1024
DEFAULT_CONFIG = "/etc/p1daemon/p1daemon.toml"
_LOG_LEVELS = ("debug", "info", "warning", "error")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="p1daemon")
def main() -> None:
    """Read DSMR P1 telegrams from smart meters and publish them over MQTT."""


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")


@main.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--key", help="Smarty decryption key (32 hex digits): input is encrypted frames.")
@click.option(
    "--auth-key",
    default=SMARTY_AUTH_KEY.hex().upper(),
    show_default=True,
    help="Smarty authentication key AK (32 hex digits), or 'none' for frames without AAD.",
)
@click.option("--no-crc", is_flag=True, help="Accept telegrams whose CRC does not match.")
@click.option(
    "--max-frame",
    default=8192,
    show_default=True,
    type=click.IntRange(256, 1024 * 1024),
    help="Largest telegram in bytes.",
)
def parse(
    paths: tuple[str, ...], key: str | None, auth_key: str, no_crc: bool, max_frame: int
) -> None:
    """Print one JSON reading per valid telegram in capture files PATHS ('-' is stdin).

    Dropped frames go to stderr, one line each with the reason; junk between telegrams
    (a flood of '/' included) is grouped into one drop per --max-frame bytes. Exit
    status: 0 when every frame was valid, 1 when any was dropped, 2 on usage errors.
    """
    try:
        key_bytes = parse_key(key, "--key") if key is not None else None
        ak = None if auth_key.lower() == "none" else parse_key(auth_key, "--auth-key")
    except InvalidKeyError as exc:
        raise click.UsageError(str(exc)) from None
    dropped = 0
    out = sys.stdout
    for path in paths:
        stream = ReadingStream(
            TelegramDecoder(check_crc=not no_crc, max_size=max_frame, key=key_bytes, auth_key=ak)
        )
        try:
            source = _open(path)
        except OSError as exc:
            raise click.UsageError(f"cannot read {path}: {exc.strerror}") from None
        with source:
            while True:
                try:
                    chunk = source.read(_CHUNK)
                except OSError as exc:
                    raise click.UsageError(f"cannot read {path}: {exc.strerror}") from None
                events = stream.feed(chunk) if chunk else stream.flush()
                for event in events:
                    if isinstance(event, Dropped):
                        dropped += 1
                        click.echo(f"{path}: dropped {event.describe()}", err=True)
                    else:
                        out.write(event.model_dump_json())
                        out.write("\n")
                if not chunk:
                    break
    out.flush()
    sys.exit(1 if dropped else 0)


def _config_failed(exc: ConfigError) -> NoReturn:
    for line in exc.lines:
        click.echo(line, err=True)
    sys.exit(1)


@main.command()
@click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    metavar="PATH",
    help="Configuration file (TOML).",
)
@click.option(
    "--stdout",
    "to_stdout",
    is_flag=True,
    help="Print readings as JSON Lines on stdout instead of publishing them.",
)
@click.option(
    "--log-level",
    type=click.Choice(_LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Least severe log messages to show (on stderr).",
)
def run(config_path: str, to_stdout: bool, log_level: str) -> None:
    """Read every configured meter until stopped (SIGTERM/SIGINT; SIGHUP reloads).

    Exits by itself, with status 0, when every meter is a replay without looping and
    all of them have been played.
    """
    log_setup = setup_logging(log_level)
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _config_failed(exc)
    secrets = set(config.secret_values())
    log_setup.set_secrets(secrets)

    def reload() -> Config:
        new = load_config(config_path)
        # Old secrets stay masked too: a line about the old connection may still come.
        secrets.update(new.secret_values())
        log_setup.set_secrets(secrets)
        return new

    sink: ReadingSink
    daemon: Daemon | None = None
    if to_stdout:
        sink = JsonLinesSink(sys.stdout)
    else:
        # The sink reports per-meter health that only the daemon knows; the daemon needs
        # the sink to start. The lambda closes that loop once both exist.
        # from_config also wires Home Assistant discovery and the energy views.
        sink = MqttSink.from_config(
            config,
            health_source=lambda: daemon.meter_snapshots() if daemon is not None else {},
        )
    daemon = Daemon(config, sink, SystemdHooks.from_environment(), reload=reload)
    try:
        status = daemon.run()
    except (OutboxUnavailable, MqttSetupError) as exc:
        logging.getLogger("p1daemon").error("%s", exc)
        sys.exit(1)
    except Exception as exc:  # a bug: say it in one line (details with --log-level debug)
        logging.getLogger("p1daemon").debug("fatal error", exc_info=True)
        click.echo(f"p1daemon: fatal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    sys.exit(status)


@main.command("check-config")
@click.argument("path", metavar="PATH")
def check_config(path: str) -> None:
    """Validate configuration file PATH and print the effective settings, secrets masked.

    Exit status 0 when the file is valid, 1 with one line per problem when it is not.
    """
    try:
        config = load_config(path)
    except ConfigError as exc:
        _config_failed(exc)
    click.echo(render_config(config, path), nl=False)


def _probe_line(baudrate: str) -> LineSettings | None:
    if baudrate.lower() == "auto":
        return None
    if not baudrate.isdigit() or int(baudrate) <= 0:
        raise click.UsageError(f"--baudrate must be 'auto' or a number, got {baudrate!r}")
    rate = int(baudrate)
    return DSMR2 if rate == DSMR2.baudrate else LineSettings(rate)


@main.command("probe")
@click.argument("port", metavar="PORT")
@click.option(
    "--baudrate",
    default="auto",
    show_default=True,
    help="'auto' tries 115200 8N1 and 9600 7E1; a number fixes the rate "
    "(9600 means 7E1 as DSMR 2.2/3.0 meters use it, anything else 8N1).",
)
@click.option(
    "--timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait for one valid telegram.",
)
@click.option("--key", help="Smarty decryption key (32 hex digits) for encrypted meters.")
def probe_command(port: str, baudrate: str, timeout: float, key: str | None) -> None:
    """Find PORT's serial settings and show what the meter sends.

    PORT is a device (/dev/serial/by-id/...), socket://host:port or rfc2217://host:port.
    Prints the header, DSMR version, equipment id, the registers present and the M-Bus
    devices of the first valid telegram. Exit status 1 when none arrives in time.
    """
    try:
        spec = parse_source(port)
        key_bytes = parse_key(key, "--key") if key is not None else None
    except (SourceSpecError, InvalidKeyError) as exc:
        raise click.UsageError(str(exc)) from None
    options = SourceOptions(line=_probe_line(baudrate), encrypted=key_bytes is not None)
    try:
        result = probe(spec, options, timeout, key=key_bytes)
    except ProbeError as exc:
        click.echo(f"probe: {exc}", err=True)
        sys.exit(1)
    click.echo(describe(result))
