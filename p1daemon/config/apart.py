"""The daemon's way to load its configuration: validated in a short-lived child process.

Validation needs pydantic, and pydantic with the validators it builds is about 9 MB of
resident memory (issue 16); a Python process never gives back the memory of a module
it imported. The daemon runs for months on a 512 MB board and needs the configuration
only as the plain dataclasses of `p1daemon.config.model`, so it runs `load_config` in
a child (`python -m p1daemon.config.apart FILE`), which exits as soon as it is done,
and takes the result over a pipe, pickled: the same interpreter and the same code on
both ends, and nothing but the child we started writes to that pipe.

The child reads the same file with the same environment (secrets from
P1DAEMON_MQTT_PASSWORD and the meters' key variables), so the problems it finds are
the lines `load_config` would have raised, raised again here as the same
`ConfigError`. Used at start-up and again on SIGHUP; `check-config` and the other
commands validate in their own process, where pydantic costs nothing after they exit.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

from p1daemon.config.errors import ConfigError
from p1daemon.config.model import Config

# Generous: this machine validates the example in ~0.3 s, a Pi Zero 2 W in a few seconds.
TIMEOUT_S = 120.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def load_config_apart(path: str | os.PathLike[str]) -> Config:
    """`load_config(path)`, computed by a child process; raises `ConfigError` as it does."""
    label = os.fspath(path)
    # The child must import this very copy of p1daemon (a checkout run in place, a test).
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        part for part in (_PACKAGE_ROOT, environ.get("PYTHONPATH", "")) if part
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "p1daemon.config.apart", label],
            capture_output=True,
            env=environ,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError([f"{label}: validation did not finish in {TIMEOUT_S:.0f} s"]) from None
    except OSError as exc:
        raise ConfigError([f"{label}: cannot start the validation: {exc}"]) from None
    if done.returncode != 0 or not done.stdout:
        raise ConfigError([f"{label}: validation failed: {_last_line(done.stderr)}"])
    kind, payload = pickle.loads(done.stdout)
    if kind == "problems":
        raise ConfigError(payload)
    if not isinstance(payload, Config):
        raise ConfigError([f"{label}: validation failed: it returned a {type(payload).__name__}"])
    return payload


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "the validating process ended without a word"


def main(argv: list[str]) -> int:
    """The child: validate `argv[1]`, write (kind, payload) pickled to stdout."""
    from p1daemon.config.loader import load_config  # the child alone imports pydantic

    payload: tuple[str, object]
    try:
        payload = ("config", load_config(argv[1]))
    except ConfigError as exc:
        payload = ("problems", exc.lines)
    sys.stdout.buffer.write(pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
