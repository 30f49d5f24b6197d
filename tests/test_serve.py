"""Serving a meter's accepted telegrams over TCP (`serve = "127.0.0.1:2001"`).

A real daemon reads a real pty meter; real TCP clients (and dsmr-parser's socket reader)
connect to it. What a client receives is compared byte for byte with the telegrams the
daemon accepted (what reached its outputs), never with what the test wrote to the pty.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from mosquitto_broker import Broker, Subscriber
from test_daemon_support import PtyMeter, seq_of, telegram, wait_until

from p1daemon.config import Config
from p1daemon.config.model import MeterConfig
from p1daemon.daemon.app import Daemon
from p1daemon.daemon.builder import build
from p1daemon.daemon.processor import Document, EventSink
from p1daemon.publish.sink import MqttSink
from p1daemon.reading.meter import MeterReading
from p1daemon.serve.address import parse_listen_address
from p1daemon.serve.output import ServeOutput
from p1daemon.serve.server import ServeError

FAST = {"reconnect_initial_s": 0.02, "reconnect_max_s": 0.1}


def free_port(family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Recorder:
    """An output that keeps the readings the daemon accepted, in order."""

    name = "recorder"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.readings: list[MeterReading] = []

    def start(self, subscriptions: Sequence[str], events: EventSink) -> None:
        pass

    def on_reading(self, reading: MeterReading) -> None:
        with self._lock:
            self.readings.append(reading)

    def on_documents(self, documents: Sequence[Document]) -> None:
        pass

    def stop(self, timeout: float) -> None:
        pass

    def seqs(self) -> list[int]:
        with self._lock:
            return [seq_of(r) for r in self.readings]


class Client:
    """A served client collecting what it receives on a thread of its own."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, rcvbuf: int | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect((host, port))
        self._lock = threading.Lock()
        self._data = bytearray()
        self.closed = False
        self._reading = rcvbuf is None
        if self._reading:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                return
            with self._lock:
                self._data += chunk

    @property
    def data(self) -> bytes:
        with self._lock:
            return bytes(self._data)

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """For a client that never read: drain and see the end of the stream."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except OSError:
            return False
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def meter_entry(link: Path, serve: str, **keys: Any) -> dict[str, Any]:
    return {"name": "house", "source": str(link), "serve": serve, **FAST, **keys}


@pytest.fixture
def stack() -> Iterator[list[Any]]:
    """Everything a test started, stopped in reverse order."""
    items: list[Any] = []
    yield items
    for item in reversed(items):
        if isinstance(item, Daemon):
            item.shutdown()
        elif isinstance(item, PtyMeter):
            item.unplug()
        elif isinstance(item, Client):
            item.close()


def start_daemon(
    stack: list[Any], config: Config, *, mqtt: bool = False
) -> tuple[Daemon, Recorder, ServeOutput]:
    recorder = Recorder()
    daemon: Daemon | None = None
    outputs: list[Any] = []
    if mqtt:  # health from the daemon's counters, as `p1daemon run` wires it
        outputs.append(
            MqttSink.from_config(
                config,
                health_source=lambda: daemon.meter_snapshots() if daemon is not None else {},
            )
        )
    dispatcher = build(
        config,
        [*outputs, recorder],
        persist=False,
        serve_stats=lambda name: daemon.stats_for(name) if daemon is not None else None,
    )
    daemon = Daemon(config, dispatcher, tick_s=0.05)
    stack.append(daemon)
    daemon.start()
    serve = dispatcher.output("serve")
    assert isinstance(serve, ServeOutput)
    return daemon, recorder, serve


def clients_of(serve: ServeOutput, n: int) -> bool:
    return wait_until(lambda: serve.servers["house"].clients == n)


def accepted_bytes(recorder: Recorder, after: int = 0) -> bytes:
    return b"".join(telegram(seq) for seq in recorder.seqs()[after:])


def feed_until_accepted(pty: PtyMeter, recorder: Recorder, seq: int) -> None:
    """The first telegram after the port opened (a port may flush what came before)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pty.write(telegram(seq))
        if wait_until(lambda: seq in recorder.seqs(), timeout=0.05):
            return
    raise AssertionError(f"telegram {seq} never accepted")


def serve_config(pty: PtyMeter, port: int, **keys: Any) -> Config:
    return Config.model_validate({"meters": [meter_entry(pty.link, f"127.0.0.1:{port}", **keys)]})


# -- configuration -----------------------------------------------------------------------


def test_serve_is_off_by_default_and_takes_ipv4_and_ipv6() -> None:
    meter = MeterConfig.model_validate({"name": "house", "source": "/dev/ttyUSB0"})
    assert meter.serve is None
    assert meter.serve_max_clients == 4
    assert parse_listen_address("127.0.0.1:2001").text == "127.0.0.1:2001"
    v6 = parse_listen_address("[::1]:2001")
    assert (v6.host, v6.port, v6.family, v6.loopback) == ("::1", 2001, socket.AF_INET6, True)
    assert not parse_listen_address("0.0.0.0:2001").loopback


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2001", "use"),
        ("localhost:2001", "not an IP address"),
        ("127.0.0.1:0", "1..65535"),
        ("127.0.0.1:70000", "1..65535"),
        ("::1:2001", "IPv6 in brackets"),
        ("[::1]2001", "use"),
    ],
)
def test_a_bad_serve_address_is_a_one_line_config_error(value: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected) as info:
        MeterConfig.model_validate({"name": "house", "source": "/dev/ttyUSB0", "serve": value})
    assert "serve" in str(info.value)


# -- the daemon with a real pty meter ------------------------------------------------------


def test_two_clients_get_exactly_the_accepted_telegrams(tmp_path: Path, stack: list[Any]) -> None:
    pty = PtyMeter(tmp_path / "p1").plug()
    stack.append(pty)
    port = free_port()
    daemon, recorder, serve = start_daemon(stack, serve_config(pty, port))
    first, second = Client(port), Client(port)
    stack += [first, second]
    assert clients_of(serve, 2)
    feed_until_accepted(pty, recorder, 1)
    corrupt = telegram(999).replace(b"00.378*kW", b"00.379*kW")  # CRC no longer matches
    for seq in range(2, 41):
        pty.write_all(telegram(seq) + (corrupt if seq % 10 == 0 else b"") + b"noise\r\n")
    assert wait_until(lambda: recorder.seqs()[-1:] == [40])
    expected = accepted_bytes(recorder)
    assert 999 not in recorder.seqs()
    for client in (first, second):
        assert wait_until(lambda c=client: len(c.data) >= len(expected)), len(client.data)
        assert client.data == expected  # the same telegrams, byte for byte, no garbage
    health = daemon.meter_snapshots()["house"]["serve"]
    assert health == {
        "address": f"127.0.0.1:{port}",
        "clients": 2,
        "connections": 2,
        "refused": 0,
        "dropped": 0,
        "lost_telegrams": 0,
    }
    # The public reading document is unchanged by serving.
    assert "raw" not in recorder.readings[0].model_dump_json()


def test_a_client_beyond_serve_max_clients_is_refused_and_counted(
    tmp_path: Path, stack: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    pty = PtyMeter(tmp_path / "p1").plug()
    stack.append(pty)
    port = free_port()
    daemon, recorder, serve = start_daemon(stack, serve_config(pty, port, serve_max_clients=1))
    caplog.set_level(logging.INFO, "p1daemon.serve")
    kept = Client(port)
    stack.append(kept)
    assert clients_of(serve, 1)
    extra = Client(port)
    stack.append(extra)
    assert wait_until(lambda: extra.closed)
    assert wait_until(lambda: daemon.meter_snapshots()["house"]["serve"]["refused"] == 1)
    feed_until_accepted(pty, recorder, 1)
    assert wait_until(lambda: kept.data.endswith(telegram(1)))
    assert extra.data == b""
    refused = [r.getMessage() for r in caplog.records if "refused client" in r.getMessage()]
    assert len(refused) == 1 and "already 1 of 1" in refused[0]


def test_a_stalled_client_is_dropped_while_the_other_and_mqtt_keep_up(
    tmp_path: Path,
    stack: list[Any],
    broker: Broker,
    subscriber: Subscriber,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "p1daemon.serve")
    pty = PtyMeter(tmp_path / "p1").plug()
    stack.append(pty)
    port = free_port()
    config = Config.model_validate(
        {
            "mqtt": {"port": broker.port, "reconnect_max_delay_s": 1.0, "health_interval_s": 1.0},
            "buffer": {"path": str(tmp_path / "outbox.db"), "commit_interval_s": 0.2},
            "meters": [meter_entry(pty.link, f"127.0.0.1:{port}")],
        }
    )
    daemon, recorder, serve = start_daemon(stack, config, mqtt=True)
    fast = Client(port)
    stalled = Client(port, rcvbuf=4096)  # never reads
    stack += [fast, stalled]
    assert clients_of(serve, 2)
    feed_until_accepted(pty, recorder, 1)
    last = 1500  # ~500 KB: far more than the kernel buffers and the backlog hold
    for seq in range(2, last + 1):
        pty.write_all(telegram(seq))
    assert wait_until(lambda: recorder.seqs()[-1:] == [last], timeout=20)
    assert wait_until(lambda: serve.servers["house"].clients == 1)
    expected = accepted_bytes(recorder)
    assert wait_until(lambda: len(fast.data) >= len(expected), timeout=10)
    assert fast.data == expected  # the other client lost nothing
    assert stalled.closed_by_server()
    subscriber.wait_for(
        lambda _: len(subscriber.on("p1/house/reading")) >= len(recorder.seqs()),
        20,
        "every reading over MQTT",
    )
    health = daemon.meter_snapshots()["house"]["serve"]
    assert health["dropped"] == 1 and health["clients"] == 1 and health["connections"] == 2
    assert health["lost_telegrams"] >= 8
    subscriber.wait_for(
        lambda _: any(
            m.json().get("serve", {}).get("dropped") == 1 for m in subscriber.on("p1/house/health")
        ),
        10,
        "the drop in the meter's health on MQTT",
    )
    drops = [r for r in caplog.records if "stopped keeping up" in r.getMessage()]
    assert len(drops) == 1 and drops[0].levelno == logging.WARNING


def split_telegrams(data: bytes) -> list[bytes]:
    """Whole telegrams only: every piece starts with '/' and ends with the CRC line."""
    pieces = [b"/" + p for p in data.split(b"/")[1:]]
    assert data.startswith(b"/") or not data
    return pieces


def test_a_reconnecting_client_resumes_at_the_next_whole_telegram(
    tmp_path: Path, stack: list[Any]
) -> None:
    pty = PtyMeter(tmp_path / "p1").plug()
    stack.append(pty)
    port = free_port()
    daemon, recorder, serve = start_daemon(stack, serve_config(pty, port))
    feed_until_accepted(pty, recorder, 1)
    stop = threading.Event()

    def meter() -> None:
        seq = 2
        while not stop.is_set():
            pty.write_all(telegram(seq))
            seq += 1
            time.sleep(0.002)

    writer = threading.Thread(target=meter, daemon=True)
    writer.start()
    try:
        client = Client(port)
        assert wait_until(lambda: len(split_telegrams(client.data)) >= 5)
        client.close()
        assert clients_of(serve, 0)
        again = Client(port)
        stack.append(again)
        assert wait_until(lambda: len(split_telegrams(again.data)) >= 5)
    finally:
        stop.set()
        writer.join(5)
    for received in (client.data, again.data):
        pieces = split_telegrams(received)
        seqs = [int(p.split(b"1-0:1.8.1(")[1][:10].replace(b".", b"")) for p in pieces[:-1]]
        for piece, seq in zip(pieces, seqs, strict=False):
            assert piece == telegram(seq)  # whole, unchanged
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none skipped
        assert set(seqs) <= set(recorder.seqs())
    assert daemon.meter_snapshots()["house"]["serve"]["connections"] == 2


def test_dsmr_parser_socket_reader_parses_what_it_receives(
    tmp_path: Path, stack: list[Any]
) -> None:
    from dsmr_parser import obis_references, telegram_specifications
    from dsmr_parser.clients.socket_ import SocketReader

    pty = PtyMeter(tmp_path / "p1").plug()
    stack.append(pty)
    port = free_port()
    _, recorder, serve = start_daemon(stack, serve_config(pty, port))
    values: list[int] = []

    def read() -> None:
        reader = SocketReader("127.0.0.1", port, telegram_specifications.V5)
        for p in reader.read():
            values.append(
                int(p[obis_references.ELECTRICITY_USED_TARIFF_1].value * 1000)
                if hasattr(p, "__getitem__")
                else int(p.ELECTRICITY_USED_TARIFF_1.value * 1000)
            )
            if values[-1] == 3:
                return

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    assert clients_of(serve, 1)
    feed_until_accepted(pty, recorder, 1)
    for seq in (2, 3):
        pty.write_all(telegram(seq))
    thread.join(10)
    # Connected before the first telegram, the reader parsed every accepted one, in order
    # (telegram 1 may have been accepted more than once while feed_until_accepted retried).
    assert not thread.is_alive()
    assert values == recorder.seqs() and values[-2:] == [2, 3]


def test_clients_stay_connected_across_an_unplugged_meter(tmp_path: Path, stack: list[Any]) -> None:
    pty = PtyMeter(tmp_path / "p1").plug()
    stack.append(pty)
    port = free_port()
    _, recorder, serve = start_daemon(stack, serve_config(pty, port))
    client = Client(port)
    stack.append(client)
    assert clients_of(serve, 1)
    feed_until_accepted(pty, recorder, 1)
    pty.unplug()
    time.sleep(0.2)  # the reader notices and retries
    pty.plug()
    feed_until_accepted(pty, recorder, 2)
    pty.write_all(telegram(3))
    assert wait_until(lambda: recorder.seqs()[-1:] == [3])
    assert wait_until(lambda: client.data == accepted_bytes(recorder))
    assert not client.closed and serve.servers["house"].clients == 1


def test_ipv6_loopback(tmp_path: Path, stack: list[Any]) -> None:
    try:
        port = free_port(socket.AF_INET6, "::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    pty = PtyMeter(tmp_path / "p1").plug()
    stack.append(pty)
    config = Config.model_validate({"meters": [meter_entry(pty.link, f"[::1]:{port}")]})
    daemon, recorder, serve = start_daemon(stack, config)
    client = Client(port, "::1")
    stack.append(client)
    assert clients_of(serve, 1)
    feed_until_accepted(pty, recorder, 1)
    assert wait_until(lambda: client.data == telegram(1))
    assert daemon.meter_snapshots()["house"]["serve"]["address"] == f"[::1]:{port}"


def test_a_port_in_use_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        config = Config.model_validate(
            {"meters": [meter_entry(tmp_path / "p1", f"127.0.0.1:{port}")]}
        )
        output = ServeOutput(config)
        with pytest.raises(ServeError) as info:
            output.start((), lambda event: None)
    message = str(info.value)
    assert message == (
        f"meter house: cannot serve on 127.0.0.1:{port}: the address is already in use "
        "(another program, or another p1daemon?)"
    )


def test_reload_starts_moves_and_stops_a_server(tmp_path: Path, stack: list[Any]) -> None:
    pty = PtyMeter(tmp_path / "p1").plug()
    stack.append(pty)
    first_port, second_port = free_port(), free_port()
    plain = Config.model_validate({"meters": [{"name": "house", "source": str(pty.link), **FAST}]})
    daemon, recorder, serve = start_daemon(stack, plain)
    assert serve.servers == {}
    daemon.apply_config(serve_config(pty, first_port))
    client = Client(first_port)
    stack.append(client)
    assert clients_of(serve, 1)
    daemon.apply_config(serve_config(pty, second_port))
    assert wait_until(lambda: client.closed)
    moved = Client(second_port)
    stack.append(moved)
    assert clients_of(serve, 1)
    feed_until_accepted(pty, recorder, 1)
    assert wait_until(lambda: moved.data.endswith(telegram(1)))
    daemon.apply_config(plain)
    assert serve.servers == {}
    assert wait_until(lambda: moved.closed)
    assert "serve" not in daemon.meter_snapshots()["house"]


def test_a_smarty_meter_is_served_as_its_plaintext(tmp_path: Path, stack: list[Any]) -> None:
    """Clients have no key: they get the decrypted telegram, CRC and all."""
    from conftest import OWN_FIXTURES

    encrypted = (OWN_FIXTURES / "lu" / "smarty_encrypted.bin").read_bytes()
    plaintext = (OWN_FIXTURES / "lu" / "smarty_plaintext.txt").read_bytes()
    pty = PtyMeter(tmp_path / "p1").plug()
    stack.append(pty)
    port = free_port()
    config = serve_config(pty, port, key="70316461656D6F6E2D746573746B6579")
    _, recorder, serve = start_daemon(stack, config)
    client = Client(port)
    stack.append(client)
    assert clients_of(serve, 1)
    deadline = time.monotonic() + 5
    while len(recorder.readings) < 2 and time.monotonic() < deadline:
        pty.write_all(encrypted)  # the port may have flushed the first copy on open
        wait_until(lambda: len(recorder.readings) >= 2, timeout=0.2)
    assert wait_until(lambda: client.data.count(b"/") >= len(recorder.readings) >= 2)
    pieces = split_telegrams(client.data)
    assert len(pieces) == len(recorder.readings)
    assert plaintext in pieces
    assert all(b"0-0:1.0.0(" in p and p.endswith(b"\r\n") for p in pieces)


def test_wire_bytes_are_the_telegram_as_the_meter_sent_it() -> None:
    from test_daemon_support import dsmr22_telegram

    from p1daemon.daemon.reader import wire_bytes
    from p1daemon.frame.decoder import TelegramDecoder
    from p1daemon.frame.events import Frame

    for sent in (telegram(42), dsmr22_telegram(7)):
        frames = TelegramDecoder().feed(sent + b"/")  # the next '/' ends a CRC-less one
        assert isinstance(frames[0], Frame)
        assert wire_bytes(frames[0]) == sent


def test_a_removed_served_meter_does_not_come_back_in_health(
    tmp_path: Path, stack: list[Any]
) -> None:
    pty = PtyMeter(tmp_path / "p1").plug()
    stack.append(pty)
    port = free_port()
    daemon, _, serve = start_daemon(stack, serve_config(pty, port))
    other = {"name": "other", "source": str(tmp_path / "p2"), **FAST}
    daemon.apply_config(Config.model_validate({"meters": [other]}))
    assert serve.servers == {}
    assert set(daemon.meter_snapshots()) == {"other"}
