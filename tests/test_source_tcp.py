"""`socket://` sources against a loopback server standing in for a network P1 bridge."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from test_daemon_support import TcpBridge, telegram, wait_until

from p1daemon.source.base import SourceUnavailable
from p1daemon.source.spec import SourceKind, SourceSpecError, parse_source
from p1daemon.source.tcp import TcpSource


@pytest.fixture
def bridge() -> Iterator[TcpBridge]:
    server = TcpBridge()
    yield server
    server.stop()


def read_until(source: TcpSource, want: bytes, timeout: float = 3.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got and time.monotonic() < deadline:
        got += source.read(0.05)
    return got


def test_reads_what_the_bridge_sends(bridge: TcpBridge) -> None:
    source = TcpSource("127.0.0.1", bridge.port)
    source.open()
    try:
        assert wait_until(lambda: bridge.accepted == 1)
        assert source.read(0.05) == b""  # nothing yet: a timeout, not an error
        bridge.send(telegram(1) + telegram(2))
        assert read_until(source, telegram(2)) == telegram(1) + telegram(2)
    finally:
        source.close()


def test_bridge_closing_the_connection_then_reconnect(bridge: TcpBridge) -> None:
    source = TcpSource("127.0.0.1", bridge.port)
    source.open()
    assert wait_until(lambda: bridge.accepted == 1)
    bridge.drop_client()
    with pytest.raises(SourceUnavailable, match=r"^connection closed by the bridge$"):
        read_until(source, b"never")
    source.close()
    source.open()
    assert wait_until(lambda: bridge.accepted == 2)
    bridge.send(telegram(3))
    assert read_until(source, telegram(3)) == telegram(3)
    source.close()


def test_bridge_down_is_unavailable_until_it_is_back(bridge: TcpBridge) -> None:
    bridge.stop()
    source = TcpSource("127.0.0.1", bridge.port)
    with pytest.raises(SourceUnavailable, match=r"^cannot connect: Connection refused$"):
        source.open()
    bridge.start()
    source.open()
    source.close()


def test_description() -> None:
    assert TcpSource("bridge.local", 2000).description == "socket://bridge.local:2000"


def test_network_source_forms() -> None:
    spec = parse_source("socket://[fe80::1]:2000")
    assert (spec.kind, spec.host, spec.port) == (SourceKind.SOCKET, "fe80::1", 2000)
    spec = parse_source("rfc2217://ser2net.local:3001?logging=debug")
    assert (spec.kind, spec.host, spec.port) == (SourceKind.RFC2217, "ser2net.local", 3001)
    assert spec.text == "rfc2217://ser2net.local:3001?logging=debug"  # options go to pyserial
    with pytest.raises(SourceSpecError, match="needs a port number"):
        parse_source("rfc2217://host:x")
