"""What a meter's `source` string means, decided once when the configuration is loaded.

Parsing it up front lets a typo ("sockets://", a relative device name) fail at start-up
with a clear line instead of turning into an endless reconnect loop at run time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

REPLAY_PREFIX = "replay:"
DEMO_PREFIX = "demo:"
# The forms a real meter is reached by; `demo:` (the synthetic demo meters) is left out
# of this hint on purpose.
_FORMS = "a device path (/dev/...), socket://host:port, rfc2217://host:port or replay:PATH"


class SourceKind(StrEnum):
    SERIAL = "serial"
    SOCKET = "socket"
    RFC2217 = "rfc2217"
    REPLAY = "replay"
    DEMO = "demo"


class SourceSpecError(ValueError):
    """The source string has no recognised form; the message is the one-line reason."""


@dataclass(frozen=True, slots=True)
class SourceSpec:
    kind: SourceKind
    text: str
    """The string as configured, with replay paths made absolute."""
    host: str = ""
    port: int = 0
    path: Path | None = None
    profile: str = ""
    """demo: which synthetic metering point."""
    speed: float = 1.0
    """demo: how many simulated seconds of its day pass per real second."""

    @property
    def finite_capable(self) -> bool:
        """Only a capture file can come to an end; a port just waits for more bytes."""
        return self.kind is SourceKind.REPLAY

    @property
    def identity(self) -> str:
        """What two sources must not share: the same device reached through any symlink."""
        if self.kind is SourceKind.SERIAL:
            return os.path.realpath(self.text)
        if self.kind in (SourceKind.SOCKET, SourceKind.RFC2217):
            return f"{self.kind}://{self.host.lower()}:{self.port}"
        if self.kind is SourceKind.DEMO:
            return self.text
        return f"{REPLAY_PREFIX}{os.path.realpath(str(self.path))}"


def _host_port(text: str, scheme: str) -> tuple[str, int]:
    rest = text[len(scheme) + 3 :].partition("?")[0].rstrip("/")
    host, sep, port_text = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise SourceSpecError(f"{scheme}:// needs host:port, got {text!r}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SourceSpecError(f"{scheme}:// needs a port number from 1 to 65535, got {text!r}")
    return host, int(port_text)


def _demo(text: str) -> SourceSpec:
    """`demo:PROFILE` or `demo:PROFILE?speed=N` (N simulated seconds per real second)."""
    # Here, not at the top: every configuration parses its sources, few are demos.
    from p1daemon.source.demo_profile import PROFILES

    name, _, query = text[len(DEMO_PREFIX) :].partition("?")
    if name not in PROFILES:
        raise SourceSpecError(
            f"demo: needs one of {', '.join(PROFILES)} (e.g. demo:house), got {text!r}"
        )
    speed = 1.0
    if query:
        key, _, value = query.partition("=")
        try:
            speed = float(value) if key == "speed" else math.nan
        except ValueError:
            speed = math.nan
        if not 1 <= speed <= 86400:
            raise SourceSpecError(
                f"demo: takes ?speed=N with N from 1 to 86400 (simulated seconds per real "
                f"second), got {text!r}"
            )
    canonical = f"{DEMO_PREFIX}{name}" + (f"?speed={speed:g}" if speed != 1 else "")
    return SourceSpec(SourceKind.DEMO, canonical, profile=name, speed=speed)


def parse_source(text: str, *, base_dir: Path | None = None) -> SourceSpec:
    """Classify `text`; a relative replay path is taken relative to `base_dir`."""
    text = text.strip()
    if text.startswith(DEMO_PREFIX):
        return _demo(text)
    if text.startswith(REPLAY_PREFIX):
        raw = text[len(REPLAY_PREFIX) :]
        if not raw:
            raise SourceSpecError("replay: needs a capture file path, e.g. replay:capture.txt")
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        path = Path(os.path.normpath(path))
        return SourceSpec(SourceKind.REPLAY, f"{REPLAY_PREFIX}{path}", path=path)
    for kind in (SourceKind.SOCKET, SourceKind.RFC2217):
        if text.lower().startswith(f"{kind}://"):
            host, port = _host_port(text, kind.value)
            return SourceSpec(kind, text, host=host, port=port)
    if "://" in text:
        raise SourceSpecError(f"unsupported scheme in {text!r}; expected {_FORMS}")
    if not text.startswith("/"):
        raise SourceSpecError(f"expected {_FORMS}, got {text!r}")
    return SourceSpec(SourceKind.SERIAL, text)
