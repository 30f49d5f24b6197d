"""A real mosquitto for tests: free loopback port, throwaway config, stop and restart.

The broker is the thing whose absence the publisher must survive, so tests stop and
restart it on the *same* port (clients reconnect to where it was). Three flavours:
anonymous, password file (`mosquitto_passwd -b`), and a TLS listener with a CA and a
server certificate made in the test with `cryptography`.

`Subscriber` records everything it receives. It uses a persistent session (fixed client
id, clean_session=False, QoS 1) and the broker keeps sessions across restarts
(persistence on, saved at SIGTERM), so the messages published while the subscriber was
reconnecting are queued for it rather than lost: a missing reading in a test is then
the publisher's fault, never the subscriber's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def require_mosquitto() -> str:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    return MOSQUITTO


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


# -- TLS material -----------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    other_ca_cert: Path  # a CA that did not sign the server: must be rejected


def make_tls(directory: Path) -> TlsFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def make_ca(common: str) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(name(common))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = make_ca("p1daemon test CA")
    _other_key, other_cert = make_ca("some other CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = TlsFiles(
        directory / "ca.crt",
        directory / "server.crt",
        directory / "server.key",
        directory / "other-ca.crt",
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    files.other_ca_cert.write_bytes(other_cert.public_bytes(pem))
    files.server_cert.write_bytes(server_cert.public_bytes(pem))
    files.server_key.write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


# -- the broker -------------------------------------------------------------------------


class Broker:
    """One mosquitto process at a time, always on the same loopback port."""

    def __init__(
        self,
        directory: Path,
        *,
        users: dict[str, str] | None = None,
        tls: TlsFiles | None = None,
        extra_config: list[str] | None = None,
    ) -> None:
        self.binary = require_mosquitto()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.tls = tls
        self.password_file: Path | None = None
        self.log_path = directory / "mosquitto.log"
        self.extra_config = list(extra_config or [])
        self._process: subprocess.Popen[bytes] | None = None
        if users is not None:
            self.password_file = directory / "passwd"
            self.set_users(users)
        self._write_config()

    def set_users(self, users: dict[str, str]) -> None:
        """Rewrite the password file; a running broker re-reads it on SIGHUP."""
        if MOSQUITTO_PASSWD is None:
            pytest.skip("mosquitto_passwd is not installed")
        assert self.password_file is not None
        self.password_file.write_text("")
        for user, password in users.items():
            subprocess.run(
                [MOSQUITTO_PASSWD, "-b", str(self.password_file), user, password],
                check=True,
                capture_output=True,
            )
        os.chmod(self.password_file, 0o600)
        if self.running:
            assert self._process is not None
            self._process.send_signal(signal.SIGHUP)

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence true",
            f"persistence_location {self.directory}/",
            "autosave_interval 1800",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # As root mosquitto switches to user `mosquitto`, which cannot write the
            # session store into the test's private directory.
            lines.append("user root")
        if self.password_file is not None:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_cert}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
            ]
        lines += self.extra_config
        self.config = self.directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 5.0) -> None:
        assert not self.running, "broker already running"
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (saves sessions and retained messages) or SIGKILL (a crash)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


# -- the subscriber ---------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """Collects every message on `topic` (thread-safe); survives broker restarts."""

    def __init__(
        self,
        broker: Broker,
        topic: str = "#",
        *,
        client_id: str | None = None,
        persistent: bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-sub-{os.getpid()}-{id(self)}",
            clean_session=not persistent,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if broker.tls is not None:
            self.client.tls_set_context(ssl.create_default_context(cafile=str(broker.tls.ca_cert)))
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Received(message.topic, bytes(message.payload), bool(message.retain), time.time())
            )

    def start(self, timeout: float = 5.0) -> Subscriber:
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise AssertionError("subscriber did not get its SUBACK")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float, what: str
    ) -> None:
        def check() -> bool:
            with self._lock:
                snapshot = list(self.messages)
            return predicate(snapshot)

        wait_until(check, timeout, what)


def first_occurrences(keys: list[Any]) -> tuple[list[Any], list[Any]]:
    """Split a received sequence into first occurrences and repeats (QoS 1 duplicates)."""
    seen: set[Any] = set()
    firsts: list[Any] = []
    repeats: list[Any] = []
    for key in keys:
        if key in seen:
            repeats.append(key)
        else:
            seen.add(key)
            firsts.append(key)
    return firsts, repeats
