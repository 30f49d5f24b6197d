"""The broker connection of `watch`: the daemon's `[mqtt]` settings, a listener's client.

It reuses `MqttSettings` (host, port, credentials, `password_file`, TLS files) but not
the daemon's `BrokerLink`: that one sets the daemon's last will on `<prefix>/status`,
which a watcher must never do (its own disconnect would mark the site offline), and it
uses the daemon's client id, which would kick the daemon off the broker. So the client
here has its own id, no will, a clean session and QoS 0 subscriptions; the TLS context
is built the same way as `p1daemon.publish.client` builds it.

The first connection is made synchronously so that a broker that is not there, or that
refuses us, is one line and exit status 2 rather than a view that waits for ever; after
that paho's thread reconnects by itself and the view says so meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from p1daemon.publish.client import MqttSetupError
from p1daemon.publish.client import tls_context as daemon_tls_context
from p1daemon.publish.settings import MqttSettings
from p1daemon.watch.topics import subscriptions

OnMessage = Callable[[str, bytes, bool], None]


class WatchError(Exception):
    """Cannot watch at all (no broker, refused, bad TLS files): one line for the user."""


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    """The daemon's own TLS set-up, with its failure as a WatchError."""
    try:
        return daemon_tls_context(settings)
    except MqttSetupError as exc:
        raise WatchError(str(exc)) from exc


class Watcher:
    """Subscribes to what the view needs under `prefixes`; hands every message on."""

    def __init__(
        self, settings: MqttSettings, prefixes: tuple[str, ...], on_message: OnMessage
    ) -> None:
        self.settings = settings
        self.filters = subscriptions(prefixes)
        self._on_message_cb = on_message
        self.connected = False
        self.problem: str | None = None  # why we are not connected, once we were
        self.subscribed = threading.Event()
        self.subscribed_at = 0.0  # monotonic
        self._answered = threading.Event()
        self._refusal: str | None = None
        self._sub_mid: int | None = None
        self._client = self._build()

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _build(self) -> mqtt.Client:
        s = self.settings
        protocol = MQTTProtocolVersion.MQTTv5 if s.protocol == "5" else MQTTProtocolVersion.MQTTv311
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"p1daemon-watch-{socket.gethostname()}-{os.getpid()}",
            protocol=protocol,
        )
        if s.username:
            try:
                password = s.resolved_password()
            except OSError as exc:
                raise WatchError(f"mqtt.password_file: cannot read it: {exc}") from exc
            client.username_pw_set(s.username, password)
        if s.tls:
            client.tls_set_context(tls_context(s))
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def connect(self, timeout: float = 5.0) -> None:
        """Connect and subscribe, or raise WatchError; paho's thread runs from here on."""
        try:
            self._client.connect(self.settings.host, self.settings.port, self.settings.keepalive)
        except (OSError, ValueError) as exc:
            raise WatchError(f"cannot connect to MQTT broker {self.where}: {exc}") from None
        self._client.loop_start()
        if not self._answered.wait(timeout):
            self.stop()
            raise WatchError(f"MQTT broker {self.where} did not answer within {timeout:g} s")
        if self._refusal is not None:
            self.stop()
            raise WatchError(f"MQTT broker {self.where}: {self._refusal}")
        if not self.subscribed.wait(timeout):
            self.stop()
            raise WatchError(f"MQTT broker {self.where} did not confirm the subscriptions")

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # leaving anyway
            self._client.disconnect()
        # loop_stop joins paho's thread; a stuck connect attempt must not hold up Ctrl-C.
        stopper = threading.Thread(target=self._client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(2.0)

    # -- paho callbacks (paho's thread) -----------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self._refusal = f"the broker refused the connection: {reason_code}"
            self.problem = self._refusal
            self._answered.set()
            return
        # Renewed on every connection (clean session); retained documents come again.
        _result, mid = client.subscribe([(f, 0) for f in self.filters])
        self._sub_mid = mid
        self.connected = True
        self.problem = None
        self._answered.set()

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        if mid == self._sub_mid:
            self.subscribed_at = time.monotonic()
            self.subscribed.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if not self._answered.is_set():
            self._refusal = f"the connection closed before the broker accepted it: {reason_code}"
            self._answered.set()
        self.connected = False
        self.problem = f"connection lost ({reason_code})"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._on_message_cb(message.topic, bytes(message.payload), bool(message.retain))
