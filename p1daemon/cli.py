"""Command line: `p1daemon run`, `check-config`, `probe` and `parse`.

Every command turns bad input into one clear line on stderr and an exit status; a
Python traceback is a bug, never a way of reporting a problem to the user.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

import click

from p1daemon import __version__
from p1daemon.daemon.timing import DRAIN_TIMEOUT_S
from p1daemon.frame.smarty import SMARTY_AUTH_KEY

if TYPE_CHECKING:
    from collections.abc import Callable

    from p1daemon.config.errors import ConfigError
    from p1daemon.config.model import Config
    from p1daemon.source.line import LineSettings

_CHUNK = 64 * 1024
DEFAULT_CONFIG = "/etc/p1daemon/p1daemon.toml"
_LOG_LEVELS = ("debug", "info", "warning", "error")


class _LazyGroup(click.Group):
    """A group whose commands defined in other modules are imported only when run.

    `p1daemon --help` lists them with the short help given here, so that printing the
    list does not import the history and report code (and SQLite, pydantic's models).
    """

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy  # command name -> (module, attribute, short help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy and cmd_name not in self.commands:
            import importlib

            module, attribute, _ = self._lazy[cmd_name]
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        limit = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        for name in self.list_commands(ctx):
            if name in self._lazy and name not in self.commands:
                stand_in = click.Command(name, help=self._lazy[name][2])
                rows.append((name, stand_in.get_short_help_str(limit)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_LAZY_COMMANDS = {
    # The short help must be the command's own (tests/test_cli_imports.py compares them).
    "report": (
        "p1daemon.report.command",
        "report",
        "Energy per metering point from the settlement history, with readings, coverage, "
        "gaps, replacements and the connection's shares.",
    ),
    "history": ("p1daemon.report.command", "history", "The settlement history file."),
}


@click.group(
    cls=_LazyGroup,
    lazy=_LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
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
    from p1daemon.frame.decoder import TelegramDecoder
    from p1daemon.frame.events import Dropped
    from p1daemon.frame.smarty import InvalidKeyError, parse_key
    from p1daemon.parse.stream import ReadingStream
    from p1daemon.reading.encode import to_json

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
                        out.write(to_json(event))
                        out.write("\n")
                if not chunk:
                    break
    out.flush()
    sys.exit(1 if dropped else 0)


def _warn_short_secrets(config: Config) -> None:
    import logging

    from p1daemon.config.secrets import short_secret_warnings

    for line in short_secret_warnings(config):
        logging.getLogger("p1daemon.config").warning("%s", line)


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
    help="Print readings and the energy views' documents as JSON Lines on stdout "
    "instead of publishing them.",
)
@click.option(
    "--log-level",
    type=click.Choice(_LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Least severe log messages to show (on stderr).",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(0),
    default=DRAIN_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="When every replay has ended: how long to wait for the broker without progress "
    "before exiting with the rest still queued.",
)
def run(config_path: str, to_stdout: bool, log_level: str, drain_timeout: float) -> None:
    """Read every configured meter until stopped (SIGTERM/SIGINT; SIGHUP reloads).

    Exits by itself when every meter is a replay without looping and all of them have
    been played, once the broker has acknowledged every reading: status 0, or 3 when
    the broker made no progress for --drain-timeout seconds (the rest stays queued in
    the outbox for the next start).
    """
    # Imported here, not at the top: `--help`, `parse` and `check-config` need none of it.
    import logging

    from p1daemon.config.apart import load_config_apart
    from p1daemon.config.errors import ConfigError
    from p1daemon.daemon.app import Daemon
    from p1daemon.daemon.builder import build
    from p1daemon.daemon.timing import TICK_S
    from p1daemon.publish.client import MqttSetupError
    from p1daemon.publish.outbox import OutboxUnavailable
    from p1daemon.serve.server import ServeError
    from p1daemon.service.hooks import SystemdHooks
    from p1daemon.service.logsetup import setup_logging

    if TYPE_CHECKING:
        from p1daemon.daemon.dispatcher import Dispatcher
        from p1daemon.daemon.processor import Output

    log_setup = setup_logging(log_level)
    # Validated apart: pydantic never enters the long-running process (issue 16).
    try:
        config = load_config_apart(config_path)
    except ConfigError as exc:
        _config_failed(exc)
    secrets = set(config.secret_values())
    log_setup.set_secrets(secrets)
    _warn_short_secrets(config)

    def reload() -> Config:
        new = load_config_apart(config_path)
        # Old secrets stay masked too: a line about the old connection may still come.
        secrets.update(new.secret_values())
        log_setup.set_secrets(secrets)
        _warn_short_secrets(new)
        return new

    output: Output
    daemon: Daemon | None = None
    meters_changed: Callable[[], None] | None = None
    if to_stdout:
        from p1daemon.daemon.stdout_sink import JsonLinesOutput

        output = JsonLinesOutput(sys.stdout)
    else:
        from p1daemon.publish.sink import MqttSink

        # The sink reports per-meter health that only the daemon knows; the daemon needs
        # the sink to start. The lambda closes that loop once both exist.
        output = MqttSink.from_config(
            config,
            health_source=lambda: daemon.meter_snapshots() if daemon is not None else {},
            views_health=lambda: sink.processor_health() if sink is not None else {},
        )
        meters_changed = output.meters_changed
    # The views (energy, Home Assistant discovery, capacity, history) are processors built
    # from the config; with --stdout they print their documents too, but save or restore
    # no state. The TCP fan-out (meters with `serve`) counts its clients in the meters'
    # health.
    sink: Dispatcher | None = None
    sink = build(
        config,
        [output],
        persist=not to_stdout,
        serve_stats=lambda name: daemon.stats_for(name) if daemon is not None else None,
    )
    hooks = SystemdHooks.from_environment()
    daemon = Daemon(
        config,
        sink,
        hooks,
        reload=reload,
        tick_s=hooks.tick_interval_s(TICK_S),
        drain_timeout_s=drain_timeout,
        on_meter_change=meters_changed,
    )
    try:
        status = daemon.run()
    except (OutboxUnavailable, MqttSetupError, ServeError) as exc:
        logging.getLogger("p1daemon").error("%s", exc)
        sys.exit(1)
    except Exception as exc:  # a bug: say it in one line (details with --log-level debug)
        logging.getLogger("p1daemon").debug("fatal error", exc_info=True)
        click.echo(f"p1daemon: fatal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
    sys.exit(status)


@main.command("check-config")
@click.argument("path", metavar="PATH")
@click.option("--summary", is_flag=True, help="Print meters, broker and outbox, not every key.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when the file is valid.")
def check_config(path: str, summary: bool, quiet: bool) -> None:
    """Validate configuration file PATH and print the effective settings, secrets masked.

    Exit status 0 when the file is valid, 1 with one line per problem when it is not.
    """
    # Each import only where its output is wanted: on a Pi Zero every module is felt.
    from pathlib import Path

    from p1daemon.config.errors import ConfigError
    from p1daemon.config.loader import load_config
    from p1daemon.config.secrets import short_secret_warnings
    from p1daemon.publish.outbox import outbox_path_problem

    try:
        config = load_config(path)
    except ConfigError as exc:
        _config_failed(exc)
    problem = outbox_path_problem(Path(config.buffer.path))
    if problem is not None:
        click.echo(f"{path}: buffer.path: {problem}", err=True)
        sys.exit(1)
    for line in short_secret_warnings(config):
        click.echo(f"{path}: warning: {line}", err=True)
    if not quiet:
        if summary:
            from p1daemon.service.summary import config_summary

            text = config_summary(config, path)
        else:
            from p1daemon.config.render import render_config

            text = render_config(config, path)
        click.echo(text, nl=False)
    if any(meter.serve is not None for meter in config.meters):
        from p1daemon.serve.check import serve_warnings

        for warning in serve_warnings(config):
            click.echo(f"{path}: warning: {warning}", err=True)


def _probe_line(baudrate: str) -> LineSettings | None:
    from p1daemon.source.line import DSMR2, LineSettings

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
    from p1daemon.daemon.probe import ProbeError, describe, probe
    from p1daemon.frame.smarty import InvalidKeyError, parse_key
    from p1daemon.source.factory import SourceOptions
    from p1daemon.source.spec import SourceSpecError, parse_source

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


@main.command("watch")
@click.option("--host", help="MQTT broker host [default: from --config, else 127.0.0.1].")
@click.option(
    "--port", type=click.IntRange(1, 65535), help="MQTT broker port [default: config, else 1883]."
)
@click.option(
    "--prefix",
    "prefixes",
    multiple=True,
    metavar="PREFIX",
    help="Topic prefix of a site; repeat for several, '+' for every site on the broker "
    "[default: the config's topic_prefix, else p1].",
)
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Take the broker settings (host, port, TLS, credentials) from this configuration.",
)
@click.option("--once", is_flag=True, help="Print the current state and exit: 0 all well, 1 not.")
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="A reading older than this is stale [default: the config's site.stale_after_s, else 60].",
)
@click.option(
    "--health-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="A site whose health report is older than this is a problem "
    "[default: 3 x the config's mqtt.health_interval_s, else 180].",
)
def watch(
    host: str | None,
    port: int | None,
    prefixes: tuple[str, ...],
    config_path: str | None,
    once: bool,
    stale_after: float | None,
    health_timeout: float | None,
) -> None:
    """Show what the sites on the broker say: meters, energy, health, problems first.

    On a terminal the view is redrawn in place every second; into a pipe it prints one
    line per change. Exit status with --once: 0 when every site is fine, 1 when any has a
    problem (or none was found), 2 when the broker cannot be reached.
    """
    from p1daemon.watch.cli import watch_command

    sys.exit(
        watch_command(
            host=host,
            port=port,
            prefixes=prefixes,
            config_path=config_path,
            once=once,
            stale_after=stale_after,
            health_timeout=health_timeout,
        )
    )
