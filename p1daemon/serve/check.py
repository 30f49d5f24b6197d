"""What `check-config` can say about the `serve` keys before the daemon runs.

Whether the port is free can only be known by trying: each address is bound for a moment
(never listened on, so no client can connect and a running daemon is not disturbed) and
closed again. A port in use may be this very configuration's running service, so that is
a warning, not an error; at start the same condition stops the daemon with one line.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from p1daemon.serve.address import ListenAddress, parse_listen_address
from p1daemon.serve.server import _reason

if TYPE_CHECKING:
    from p1daemon.config.model import Config


def _bind_problem(address: ListenAddress) -> str | None:
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
    except OSError as exc:
        why = _reason(exc)
        if exc.errno == errno.EADDRINUSE:
            why += "; fine if it is this configuration's running daemon"
        elif exc.errno == errno.EACCES:
            why += " (ports below 1024 need privileges the service does not have)"
        return why
    finally:
        sock.close()
    return None


def serve_warnings(config: Config) -> list[str]:
    """One line per thing the user should look at; empty when serving looks fine."""
    out: list[str] = []
    seen: dict[str, str] = {}
    for meter in config.meters:
        if meter.serve is None:
            continue
        address = parse_listen_address(meter.serve)
        where = f"meter {meter.name}: serve = {address}"
        if address.port in {int(a.rpartition(":")[2]) for a in seen}:
            other = next(n for a, n in seen.items() if a.rpartition(":")[2] == str(address.port))
            out.append(f"{where}: port {address.port} is also served for meter {other}")
        seen[address.text] = meter.name
        if not address.loopback:
            out.append(
                f"{where} is reachable from the network: whoever can connect sees this "
                f"household's consumption telegrams (use 127.0.0.1 unless that is intended)"
            )
        problem = _bind_problem(address)
        if problem is not None:
            out.append(f"{where}: {problem}")
    return out


__all__ = ["serve_warnings"]
