"""`serve = "127.0.0.1:2001"` / `"[::1]:2001"`: where one meter's telegrams are served.

Only IP literals: a host name would be resolved at every start (and could resolve to
another interface than the one the user looked at). The configuration keeps the text;
this module turns it into something `socket.bind` takes.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str  # an IPv4 or IPv6 literal, without brackets
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def text(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return self.text


def parse_listen_address(text: str) -> ListenAddress:
    """`host:port` (IPv4) or `[host]:port` (IPv6); ValueError with a one-line reason."""
    shape = 'use "127.0.0.1:2001", "[::1]:2001" or "0.0.0.0:2001"'
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{shape}, got {text!r}")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"{shape} (IPv6 in brackets), got {text!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address; {shape}") from None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be 1..65535, got {port_text!r}")
    return ListenAddress(str(ip), int(port_text))


__all__ = ["ListenAddress", "parse_listen_address"]
