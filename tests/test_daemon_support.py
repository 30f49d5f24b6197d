"""Fake meters for the source, reader and daemon tests (and checks that the fakes are right).

Real pseudo-terminals stand in for P1 cables, a loopback TCP server for a network bridge;
telegrams are built here with correct CRCs so that every test states exactly which
readings it expects. Kept in a test module (with tests of its own) because the helpers
are only trustworthy if they are themselves tested.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from p1daemon.config.model import MeterConfig
from p1daemon.daemon.reader import MeterReader
from p1daemon.frame.crc import crc16_arc
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading

DEFAULT_EQUIPMENT = "E0000000000000001"


def telegram(seq: int, equipment_id: str = DEFAULT_EQUIPMENT) -> bytes:
    """A DSMR 5 telegram with a valid CRC whose import t1 register is `seq` Wh."""
    body = (
        "/ISK5\\2M550T-1012\r\n\r\n"
        "1-3:0.2.8(50)\r\n"
        "0-0:1.0.0(240101120000W)\r\n"
        f"0-0:96.1.1({equipment_id.encode().hex().upper()})\r\n"
        f"1-0:1.8.1({seq / 1000:010.3f}*kWh)\r\n"
        "1-0:1.8.2(000000.000*kWh)\r\n"
        "1-0:2.8.1(000001.500*kWh)\r\n"
        "1-0:2.8.2(000000.000*kWh)\r\n"
        "0-0:96.14.0(0001)\r\n"
        "1-0:1.7.0(00.378*kW)\r\n"
        "1-0:2.7.0(00.000*kW)\r\n"
        "!"
    ).encode()
    return body + f"{crc16_arc(body):04X}\r\n".encode()


def dsmr22_telegram(seq: int) -> bytes:
    """A DSMR 2.2 telegram: no version object and no CRC, as 9600 7E1 meters send it."""
    return (
        "/ISk5\\2MT382-1004\r\n\r\n"
        "0-0:96.1.1(4B384547303034303436333935353037)\r\n"
        f"1-0:1.8.1({seq / 1000:09.3f}*kWh)\r\n"
        "1-0:2.8.1(00000.000*kWh)\r\n"
        "0-0:96.14.0(0001)\r\n"
        "1-0:1.7.0(0000.32*kW)\r\n"
        "!\r\n"
    ).encode()


def seq_of(reading: Reading) -> int:
    """The `seq` a test telegram was built with."""
    assert reading.import_.t1_kwh is not None
    return round(reading.import_.t1_kwh * 1000)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


class CollectingSink:
    """A `ReadingSink` that keeps everything, for assertions; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.readings: list[MeterReading] = []
        self.started = False
        self.stopped = False
        self.submitted_after_stop = 0

    def start(self) -> None:
        self.started = True

    def submit(self, reading: MeterReading) -> None:
        with self._lock:
            if self.stopped:
                self.submitted_after_stop += 1
            self.readings.append(reading)

    def stop(self, timeout: float) -> None:
        self.stopped = True

    def of(self, meter: str) -> list[MeterReading]:
        with self._lock:
            return [r for r in self.readings if r.meter == meter]

    def seqs(self, meter: str) -> list[int]:
        return [seq_of(r) for r in self.of(meter)]


class PtyMeter:
    """A meter on a pseudo-terminal whose slave is reached through a stable symlink.

    `unplug` closes the pty and removes the link, as a USB adapter vanishing from
    /dev/serial/by-id does; `plug` makes a new pty behind the same link.
    """

    def __init__(self, link: Path) -> None:
        self.link = link
        self._master: int | None = None
        self._slave: int | None = None

    @property
    def plugged(self) -> bool:
        return self._master is not None

    def plug(self) -> PtyMeter:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation before pyserial configures it
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        os.symlink(os.ttyname(slave), self.link)
        return self

    def write(self, data: bytes) -> int:
        """Write what fits without blocking; returns the number of bytes written."""
        if self._master is None:
            return 0
        try:
            return os.write(self._master, data)
        except (BlockingIOError, OSError):
            return 0

    def write_all(self, data: bytes, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while data and time.monotonic() < deadline:
            written = self.write(data)
            data = data[written:]
            if data:
                time.sleep(0.001)
        assert not data, "the pty did not take the bytes in time"

    def unplug(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None


def keep_sending(
    meter: PtyMeter, sink: CollectingSink, name: str, seq: int, timeout: float = 5.0
) -> bool:
    """Send telegram `seq` repeatedly until the reader has it (a port flushes on open)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meter.write(telegram(seq))
        if wait_until(lambda: seq in sink.seqs(name), timeout=0.05):
            return True
    return False


class TcpBridge:
    """A network P1 bridge on loopback: accepts one client at a time and sends it bytes."""

    def __init__(self, port: int = 0) -> None:
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self._lock = threading.Lock()
        self.accepted = 0
        self.port = port
        self.start()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(4)
        self._stopped = False
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                if self._stopped:  # accepted just before the listener closed
                    client.close()
                    return
                if self._client is not None:
                    self._client.close()
                self._client = client
                self.accepted += 1

    def send(self, data: bytes) -> bool:
        with self._lock:
            client = self._client
        if client is None:
            return False
        try:
            client.sendall(data)
        except OSError:
            return False
        return True

    def drop_client(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def stop(self) -> None:
        """Power off: refuse new connections first, then cut the current one."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave the
            # port bound until then, and a restart on the same port would fail.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            self._stopped = True
        self.drop_client()


# -- the fakes are only as good as these checks -----------------------------------------


def _parse(data: bytes) -> list[object]:
    stream = ReadingStream(TelegramDecoder())
    return [*stream.feed(data), *stream.flush()]


def test_telegram_is_accepted_with_its_sequence_number() -> None:
    events = _parse(telegram(1234, "E9"))
    assert len(events) == 1
    reading = events[0]
    assert isinstance(reading, Reading)
    assert seq_of(reading) == 1234
    assert reading.equipment_id == "E9"


def test_dsmr22_telegram_is_accepted_without_crc() -> None:
    events = _parse(dsmr22_telegram(7))
    assert len(events) == 1
    assert isinstance(events[0], Reading)
    assert events[0].dsmr_version == "2.2"
    assert seq_of(events[0]) == 7


def test_pty_meter_bytes_reach_the_symlinked_slave(tmp_path: Path) -> None:
    meter = PtyMeter(tmp_path / "meter").plug()
    try:
        fd = os.open(meter.link, os.O_RDONLY | os.O_NOCTTY)
        try:
            meter.write_all(b"/abc!")
            assert os.read(fd, 100) == b"/abc!"
        finally:
            os.close(fd)
    finally:
        meter.unplug()
    assert not meter.link.exists()


def start_reader(
    readers: list[MeterReader], meter: MeterConfig, sink: CollectingSink
) -> MeterReader:
    """Start a reader for `meter` into `sink`, recorded in the `readers` fixture's list."""
    reader = MeterReader(meter, sink)
    readers.append(reader)
    reader.start()
    return reader
