"""`p1daemon watch` from options to exit status: settings, prefixes, errors as one line.

Kept out of `p1daemon/cli.py` so the command there is only its options. Exit status:
0 all well, 1 a problem (`--once`) or a bad configuration file, 2 no broker or bad usage.
"""

from __future__ import annotations

import sys

import click

from p1daemon.publish.settings import MqttSettings
from p1daemon.watch.app import WatchOptions, run
from p1daemon.watch.connect import WatchError
from p1daemon.watch.rules import Limits
from p1daemon.watch.topics import PrefixError, checked_prefix

NO_BROKER = 2
INTERRUPTED = 130


def watch_command(
    *,
    host: str | None,
    port: int | None,
    prefixes: tuple[str, ...],
    config_path: str | None,
    once: bool,
    stale_after: float | None,
    health_timeout: float | None,
) -> int:
    settings = MqttSettings()
    limits = Limits()
    if config_path is not None:
        # Only here: without --config, watch needs no other section's model.
        from p1daemon.config.errors import ConfigError
        from p1daemon.config.loader import load_config

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            for line in exc.lines:
                click.echo(line, err=True)
            return 1
        settings = config.mqtt
        limits = Limits(
            stale_after_s=config.site.stale_after_s,
            health_timeout_s=3 * config.mqtt.health_interval_s,
        )
    updates: dict[str, object] = {}
    if host is not None:
        if not host.strip():
            raise click.UsageError("--host must not be empty")
        updates["host"] = host.strip()
    if port is not None:
        updates["port"] = port
    if updates:
        settings = settings.model_copy(update=updates)
    if stale_after is not None:
        limits = Limits(stale_after, limits.health_timeout_s, limits.backlog_after_s)
    if health_timeout is not None:
        limits = Limits(limits.stale_after_s, health_timeout, limits.backlog_after_s)
    try:
        checked = tuple(
            dict.fromkeys(checked_prefix(p) for p in prefixes or (settings.topic_prefix,))
        )
    except PrefixError as exc:
        raise click.UsageError(str(exc)) from None
    options = WatchOptions(prefixes=checked, limits=limits, once=once)
    try:
        return run(settings, options, sys.stdout, tty=sys.stdout.isatty())
    except WatchError as exc:
        click.echo(f"watch: {exc}", err=True)
        return NO_BROKER
    except KeyboardInterrupt:  # Ctrl-C while --once was still collecting
        return INTERRUPTED
