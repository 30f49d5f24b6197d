"""A broker that says no: bad credentials and TLS failures are logged once, retried with
backoff, and publishing starts by itself once the broker says yes - with nothing lost."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED_FIXTURES, require_shared_fixtures
from conftest import make_sink as shared_sink
from mosquitto_broker import Broker, Subscriber, TlsFiles, first_occurrences, make_tls, wait_until
from publisher_child import readings_of

from p1daemon.publish.client import MqttSetupError
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.publish.sink import MqttSink
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading

CAPTURE = SHARED_FIXTURES / "streams" / "iskra_am550_dsmr50_566_telegrams.txt"
SUB_USER, SUB_PASSWORD = "watcher", "watcher-secret"


@pytest.fixture(scope="module")
def readings() -> list[Reading]:
    require_shared_fixtures()
    if not CAPTURE.is_file():
        pytest.skip(f"capture {CAPTURE} not found")
    return readings_of(CAPTURE)[:40]


def submit_all(sink: MqttSink, readings: list[Reading]) -> list[str]:
    stamps = []
    for reading in readings:
        sink.submit(
            MeterReading.from_reading(
                reading, meter="house", role="primary", ean=None, received_at=datetime.now(UTC)
            )
        )
        assert reading.timestamp is not None
        stamps.append(reading.timestamp.isoformat())
    return stamps


def received(subscriber: Subscriber) -> list[str]:
    stamps = [json.loads(m.payload)["timestamp"] for m in subscriber.on("p1/house/reading")]
    return first_occurrences(stamps)[0]


def make_sink(sinks: list[MqttSink], tmp_path: Path, port: int, **mqtt: Any) -> MqttSink:
    """The shared sink (conftest), retrying within a second, with an outbox of its own: a
    test's second sink is another client, not the next run of the first."""
    return shared_sink(
        sinks, tmp_path, port, outbox=f"outbox-{len(sinks)}.db", reconnect_max_delay_s=1.0, **mqtt
    )


def test_rejected_credentials_are_logged_once_retried_and_recover(
    tmp_path: Path,
    sinks: list[MqttSink],
    readings: list[Reading],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="p1daemon")
    broker = Broker(tmp_path / "broker", users={"p1": "right-one", SUB_USER: SUB_PASSWORD})
    broker.start()
    try:
        subscriber = Subscriber(broker, username=SUB_USER, password=SUB_PASSWORD).start()
        sink = make_sink(sinks, tmp_path, broker.port, username="p1", password="the-wrong-one")
        sink.start()
        sent = submit_all(sink, readings)
        assert sink.link is not None
        link = sink.link
        wait_until(lambda: link.attempt_failures >= 3, 6, "three refused attempts")
        refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(refusals) == 1, refusals
        assert "Not authorized" in refusals[0] or "Bad user name or password" in refusals[0]
        assert "the-wrong-one" not in caplog.text
        assert "refused" in sink.state() and "NOT connected" in sink.state()
        assert received(subscriber) == []

        # Backoff, not a tight loop: a handful of attempts in the time, not hundreds.
        attempts, since = link.attempt_failures, time.monotonic()
        time.sleep(1.2)
        assert link.attempt_failures - attempts <= 2
        assert time.monotonic() - since >= 1.2

        # The broker's password file is fixed (reloaded with SIGHUP): no restart of the sink.
        broker.set_users({"p1": "the-wrong-one", SUB_USER: SUB_PASSWORD})
        subscriber.wait_for(lambda ms: len(received(subscriber)) >= len(sent), 6, "readings")
        assert received(subscriber) == sent
        subscriber.stop()
    finally:
        broker.stop()


def test_password_file_is_read_and_never_logged(
    tmp_path: Path,
    sinks: list[MqttSink],
    readings: list[Reading],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="p1daemon")
    broker = Broker(tmp_path / "broker", users={"p1": "from-a-file", SUB_USER: SUB_PASSWORD})
    broker.start()
    try:
        subscriber = Subscriber(broker, username=SUB_USER, password=SUB_PASSWORD).start()
        secret = tmp_path / "mqtt-password"
        secret.write_text("from-a-file\n")
        sink = make_sink(sinks, tmp_path, broker.port, username="p1", password_file=secret)
        sink.start()
        sent = submit_all(sink, readings)
        subscriber.wait_for(lambda ms: len(received(subscriber)) >= len(sent), 5, "readings")
        assert received(subscriber) == sent
        assert "from-a-file" not in caplog.text
        subscriber.stop()
    finally:
        broker.stop()
    missing = MqttSink(
        MqttSettings(username="p1", password_file=tmp_path / "nope"),
        BufferSettings(path=str(tmp_path / "x.db")),
    )
    with pytest.raises(MqttSetupError, match="password_file"):
        missing.start()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_broker(tmp_path: Path, tls_files: TlsFiles) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker", tls=tls_files)
    broker.start()
    yield broker
    broker.stop()


def test_tls_with_the_right_ca_publishes_everything(
    tmp_path: Path,
    tls_broker: Broker,
    tls_files: TlsFiles,
    sinks: list[MqttSink],
    readings: list[Reading],
) -> None:
    subscriber = Subscriber(tls_broker).start()
    sink = make_sink(sinks, tmp_path, tls_broker.port, tls=True, ca_file=tls_files.ca_cert)
    sink.start()
    sent = submit_all(sink, readings)
    subscriber.wait_for(lambda ms: len(received(subscriber)) >= len(sent), 5, "readings")
    assert received(subscriber) == sent
    subscriber.stop()


def test_tls_with_a_wrong_ca_is_refused_unless_tls_insecure(
    tmp_path: Path,
    tls_broker: Broker,
    tls_files: TlsFiles,
    sinks: list[MqttSink],
    readings: list[Reading],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="p1daemon")
    subscriber = Subscriber(tls_broker).start()
    wrong = make_sink(sinks, tmp_path, tls_broker.port, tls=True, ca_file=tls_files.other_ca_cert)
    wrong.start()
    submit_all(wrong, readings[:5])
    assert wrong.link is not None
    link = wrong.link
    wait_until(lambda: link.attempt_failures >= 2, 5, "two failed TLS handshakes")
    failures = [r.getMessage() for r in caplog.records if "cannot connect" in r.getMessage()]
    assert len(failures) == 1 and "CERTIFICATE_VERIFY_FAILED" in failures[0], failures
    assert not wrong.connected
    assert received(subscriber) == []

    insecure = make_sink(
        sinks,
        tmp_path,
        tls_broker.port,
        tls=True,
        ca_file=tls_files.other_ca_cert,
        tls_insecure=True,
        client_id="p1daemon-insecure",
    )
    insecure.start()
    sent = submit_all(insecure, readings)
    subscriber.wait_for(lambda ms: len(received(subscriber)) >= len(sent), 5, "readings")
    assert received(subscriber) == sent
    subscriber.stop()


def test_plain_mqtt_against_a_tls_listener_is_a_failure_not_a_hang(
    tmp_path: Path, tls_broker: Broker, sinks: list[MqttSink], readings: list[Reading]
) -> None:
    sink = make_sink(sinks, tmp_path, tls_broker.port)
    sink.start()
    submit_all(sink, readings[:3])
    assert sink.link is not None
    link = sink.link
    wait_until(lambda: link.problem is not None, 5, "a reported problem")
    assert not sink.connected
    started = time.monotonic()
    sink.stop(timeout=5)
    assert time.monotonic() - started < 3


def test_mqtt5_puback_with_a_failure_reason_counts_as_done_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A message the broker refuses (MQTT 5 PUBACK "Not authorized", e.g. an ACL) must not
    be re-sent forever and hold up every later reading: it is counted and logged once.

    Driven through the callback directly: mosquitto 2.0.11 drops the connection right
    after such a PUBACK, which would turn this into a test of its reconnect timing."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    from p1daemon.publish.client import BrokerLink
    from p1daemon.publish.topics import Topics

    caplog.set_level(logging.ERROR, logger="p1daemon")
    woken: list[bool] = []
    link = BrokerLink(MqttSettings(protocol="5"), Topics("p1"), lambda: woken.append(True))
    refused = ReasonCode(PacketTypes.PUBACK, "Not authorized")
    fine = ReasonCode(PacketTypes.PUBACK, "Success")
    link._on_publish(link._client, None, 7, refused, None)
    link._on_publish(link._client, None, 8, refused, None)
    link._on_publish(link._client, None, 9, fine, None)
    # No wake-up: PUBACKs are read in the worker's own wait, whose return starts the
    # round that books them all (before paho ran in the worker, each batch woke it).
    assert list(link.acks) == [7, 8, 9] and woken == []
    link.acks.clear()  # what the worker's round does (Pipeline.take_acks)
    link._on_publish(link._client, None, 10, fine, None)
    assert list(link.acks) == [10] and woken == []
    assert link.rejected == 2
    lines = [r.getMessage() for r in caplog.records if "refused a published" in r.getMessage()]
    assert len(lines) == 1 and "Not authorized" in lines[0]
