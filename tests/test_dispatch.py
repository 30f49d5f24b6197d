"""The dispatcher: every reading to every processor and every output, in meter order;
a processor's documents through the real MQTT sink and its outbox, across an outage.

The processor registered here is a test's own (built through `daemon.builder.build`
with an extra factory, as a later feature would be): it counts the readings it sees and
makes one record per reading, so a subscriber can check that none is missing or out of
order after the broker was away.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mosquitto_broker import Broker, Subscriber
from test_daemon_support import seq_of, telegram, wait_until

from p1daemon.config import Config
from p1daemon.daemon.builder import ProcessorFactory, build
from p1daemon.daemon.dispatcher import Dispatcher, DispatcherClosed
from p1daemon.daemon.processor import (
    BrokerConnected,
    Document,
    InputEvent,
)
from p1daemon.frame.decoder import TelegramDecoder
from p1daemon.parse.stream import ReadingStream
from p1daemon.publish.sink import MqttSink
from p1daemon.reading.meter import MeterReading
from p1daemon.reading.model import Reading

METERS = ("house", "carport")
EANS = {"house": "871685900012345674", "carport": "871685900012345681"}


def meter_readings(meter: str, seqs: range) -> list[MeterReading]:
    stream = ReadingStream(TelegramDecoder())
    data = b"".join(telegram(seq, f"E-{meter.upper()}") for seq in seqs)
    parsed = [r for r in [*stream.feed(data), *stream.flush()] if isinstance(r, Reading)]
    role = "primary" if meter == "house" else "secondary"
    return [
        MeterReading.from_reading(
            r, meter=meter, role=role, ean=EANS[meter], received_at=datetime.now(UTC)
        )
        for r in parsed
    ]


class Counting:
    """A test processor: one record per reading on `p1/<meter>/test/seen`."""

    name = "counting"
    label = "the counting test processor"

    def __init__(self) -> None:
        self.seen: dict[str, list[int]] = {}
        self.events: list[InputEvent] = []
        self.ticks = 0
        self.calls: list[str] = []

    def start(self) -> Sequence[Document]:
        self.calls.append("start")
        return ()

    def on_reading(self, reading: MeterReading, now: datetime) -> Sequence[Document]:
        seqs = self.seen.setdefault(reading.meter, [])
        seqs.append(seq_of(reading))
        payload = json.dumps({"seq": seqs[-1], "count": len(seqs)}).encode()
        return [Document(f"p1/{reading.meter}/test/seen", payload, True)]

    def on_tick(self, now: datetime) -> Sequence[Document]:
        self.ticks += 1
        return ()

    def on_event(self, event: InputEvent) -> Sequence[Document]:
        self.events.append(event)
        return ()

    def stop(self) -> Sequence[Document]:
        self.calls.append("stop")
        return ()


class Broken(Counting):
    name = "broken"
    label = "the broken test processor"

    def on_reading(self, reading: MeterReading, now: datetime) -> Sequence[Document]:
        raise RuntimeError("a bug in a processor")


class Collecting:
    """An output that keeps what it gets, in order."""

    name = "collecting"

    def __init__(self) -> None:
        self.items: list[MeterReading | Document] = []
        self.lock = threading.Lock()

    def start(self, subscriptions: Sequence[str], events: object) -> None:
        pass

    def on_reading(self, reading: MeterReading) -> None:
        with self.lock:
            self.items.append(reading)

    def on_documents(self, documents: Sequence[Document]) -> None:
        with self.lock:
            self.items.extend(documents)

    def stop(self, timeout: float) -> None:
        pass


def feed_concurrently(dispatcher: Dispatcher, readings: dict[str, list[MeterReading]]) -> None:
    """One thread per meter, as the daemon's readers do."""
    threads = [
        threading.Thread(target=lambda rs=rs: [dispatcher.submit(r) for r in rs])
        for rs in readings.values()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def test_every_reading_reaches_every_processor_and_output_in_meter_order() -> None:
    counting, broken, output = Counting(), Broken(), Collecting()
    dispatcher = Dispatcher([broken, counting], [output], tick_s=0.02)
    dispatcher.start()
    readings = {"house": meter_readings("house", range(1, 201))}
    readings["carport"] = meter_readings("carport", range(1001, 1151))
    feed_concurrently(dispatcher, readings)
    assert wait_until(lambda: counting.ticks >= 2, 5)
    dispatcher.stop(2)
    assert counting.seen == {"house": list(range(1, 201)), "carport": list(range(1001, 1151))}
    # The broken processor cost nothing: each reading, then the other processor's record.
    assert dispatcher.failures == {"broken": 350}
    items = output.items
    for meter, seqs in counting.seen.items():
        mine = [
            i
            for i in items
            if (isinstance(i, MeterReading) and i.meter == meter)
            or (isinstance(i, Document) and i.topic == f"p1/{meter}/test/seen")
        ]
        assert len(mine) == 2 * len(seqs)
        for reading, document in zip(mine[::2], mine[1::2], strict=True):
            assert isinstance(reading, MeterReading) and isinstance(document, Document)
            assert json.loads(document.payload)["seq"] == seq_of(reading)
    assert counting.calls == ["start", "stop"]
    with pytest.raises(DispatcherClosed):
        dispatcher.submit(readings["house"][0])


def test_input_events_reach_the_processors_on_the_dispatchers_worker() -> None:
    counting = Counting()
    dispatcher = Dispatcher([counting], [Collecting()])
    dispatcher.start()
    dispatcher.post(BrokerConnected())
    assert wait_until(lambda: counting.events == [BrokerConnected()], 2)
    assert dispatcher.broker_connected
    dispatcher.stop(1)


def two_meter_config(tmp_path: Path, port: int) -> Config:
    return Config.model_validate(
        {
            "mqtt": {"port": port, "reconnect_max_delay_s": 1.0},
            "buffer": {"path": str(tmp_path / "state" / "outbox.db"), "commit_interval_s": 0.2},
            "meters": [
                {
                    "name": name,
                    "role": "primary" if name == "house" else "secondary",
                    "ean": EANS[name],
                    "source": f"socket://127.0.0.1:{9001 + index}",  # never opened here
                }
                for index, name in enumerate(METERS)
            ],
        }
    )


@pytest.fixture
def dispatchers() -> Iterator[list[Dispatcher]]:
    made: list[Dispatcher] = []
    yield made
    for dispatcher in made:
        dispatcher.stop(5)


def seen_records(subscriber: Subscriber, meter: str) -> list[int]:
    """The records in arrival order, without QoS 1 repeats (none may be missing)."""
    out: list[int] = []
    for message in subscriber.on(f"p1/{meter}/test/seen"):
        count = json.loads(message.payload)["count"]
        if count not in out:
            out.append(count)
    return out


def test_a_registered_processor_sees_two_meters_in_order_and_its_records_survive_an_outage(
    tmp_path: Path, broker: Broker, subscriber: Subscriber, dispatchers: list[Dispatcher]
) -> None:
    counting = Counting()
    config = two_meter_config(tmp_path, broker.port)
    extra = ProcessorFactory("counting", lambda config, persist: True, lambda c, p: counting)
    dispatcher = build(config, [MqttSink.from_config(config)], extra=[extra])
    dispatchers.append(dispatcher)
    assert [p.name for p in dispatcher.processors] == ["energy", "counting"]
    dispatcher.start()
    sink = dispatcher.output("mqtt")
    assert isinstance(sink, MqttSink)
    assert wait_until(lambda: sink.connected, 5)

    house = meter_readings("house", range(1, 301))
    carport = meter_readings("carport", range(1001, 1201))
    feed_concurrently(dispatcher, {"house": house[:100], "carport": carport[:50]})
    broker.stop()
    assert wait_until(lambda: not sink.connected, 5)
    feed_concurrently(dispatcher, {"house": house[100:200], "carport": carport[50:150]})
    broker.start()
    feed_concurrently(dispatcher, {"house": house[200:], "carport": carport[150:]})

    subscriber.wait_for(
        lambda _: (
            len(seen_records(subscriber, "house")) >= 300
            and len(seen_records(subscriber, "carport")) >= 200
        ),
        20,
        "every record after the outage",
    )
    assert counting.seen == {"house": list(range(1, 301)), "carport": list(range(1001, 1201))}
    assert seen_records(subscriber, "house") == list(range(1, 301))
    assert seen_records(subscriber, "carport") == list(range(1, 201))
    # The processor heard of both connections (the first and the one after the outage).
    assert wait_until(lambda: counting.events.count(BrokerConnected()) >= 2, 5)
    assert dispatcher.processor_failures == 0


def test_a_reload_rebuilds_a_processor_without_on_reload_and_stops_an_unwanted_one(
    tmp_path: Path,
) -> None:
    """The builder's rule for processors that cannot take a new configuration in place
    (a later feature's): `stop` on the old one, `start` on a new one, which hears of the
    broker connection that already exists; one the new configuration does not want is
    stopped and gets no more readings."""
    built: list[Counting] = []

    def make(config: Config, persist: bool) -> Counting:
        built.append(Counting())
        return built[-1]

    def wanted(config: Config, persist: bool) -> bool:
        return len(config.meters) > 0

    output = Collecting()
    config = two_meter_config(tmp_path, 9)
    dispatcher = build(config, [output], extra=[ProcessorFactory("counting", wanted, make)])
    dispatcher.start()
    dispatcher.post(BrokerConnected())
    assert wait_until(lambda: built[0].events == [BrokerConnected()], 2)
    dispatcher.submit(meter_readings("house", range(1, 2))[0])

    one_meter = config.model_copy(update={"meters": config.meters[:1]})
    dispatcher.apply_config(one_meter)
    assert len(built) == 2 and built[0].calls == ["start", "stop"]
    assert built[1].calls == ["start"] and built[1].events == [BrokerConnected()]
    dispatcher.submit(meter_readings("house", range(2, 3))[0])
    assert built[0].seen == {"house": [1]} and built[1].seen == {"house": [2]}

    no_meters = config.model_copy(update={"meters": []})
    dispatcher.apply_config(no_meters)
    assert built[1].calls == ["start", "stop"] and len(built) == 2
    assert [p.name for p in dispatcher.processors] == []
    dispatcher.submit(meter_readings("house", range(3, 4))[0])
    assert built[1].seen == {"house": [2]}
    dispatcher.stop(2)
