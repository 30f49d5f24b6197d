"""Command line: `p1daemon parse` (and, as the daemon grows, `run`, `probe`, ...).

Every command turns bad input into one clear line on stderr and an exit status; a
Python traceback is a bug, never a way of reporting a problem to the user.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

import click

from p1daemon import __version__
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.frame.events import Dropped
from p1daemon.frame.smarty import SMARTY_AUTH_KEY, InvalidKeyError, parse_key
from p1daemon.parse.stream import ReadingStream

_CHUNK = 64 * 1024


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="p1daemon")
def main() -> None:
    """Read DSMR P1 telegrams from smart meters and publish them over MQTT."""


def _open(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")  # noqa: SIM115 - closed by the caller


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
@click.option("--max-frame", default=8192, show_default=True, help="Largest telegram in bytes.")
def parse(paths: tuple[str, ...], key: str | None, auth_key: str, no_crc: bool, max_frame: int) -> None:
    """Print one JSON reading per valid telegram in capture files PATHS ('-' is stdin).

    Dropped frames go to stderr, one line each with the reason. Exit status: 0 when
    every frame was valid, 1 when any was dropped, 2 on usage errors.
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
