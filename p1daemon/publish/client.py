"""The connection to the broker: paho-mqtt 2.x set up once, watched, and never waited on.

paho runs its own network thread (`loop_start`) and reconnects forever; start-up only
schedules the first attempt (`connect_async`). The delay before each attempt is ours
(`ReconnectDelays`, handed to paho just before it waits): a quick first retry, then a few
retries within the first seconds so that a broker restart costs well under a second, then
exponential backoff with jitter up to `reconnect_max_delay_s` for a broker that stays away.

A broker that keeps the connection and answers pings but never acknowledges what we
publish would stall delivery for ever; the pipeline notices (`ack_timeout_s`) and calls
`drop_connection`, which makes paho see the connection end and reconnect, re-sending
what was in flight.

Besides publishing, the link can subscribe to a few topics (`subscriptions`, renewed on
every connection, e.g. Home Assistant's `homeassistant/status`): what arrives there is
queued in `messages` for the publisher's worker, like acknowledgements.

The callbacks below never take the publisher's lock. paho calls `on_publish` while it
holds its own outgoing-message lock, and the publisher calls `publish()` (which takes
that paho lock) while holding its own; a callback taking the publisher's lock would
deadlock the two threads. So callbacks only record what happened (an acknowledged
message id, a new connection) in structures that are safe without a lock, and wake the
publisher's worker, which does the bookkeeping.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from p1daemon.publish.settings import MqttSettings
from p1daemon.publish.topics import Topics

log = logging.getLogger("p1daemon.publish")
_paho_log = logging.getLogger("p1daemon.publish.paho")


# The socket error paho logged last in this thread (its network thread): paho reports a
# reset connection and a broker closing it alike as "connection lost", and only its log
# line tells them apart. `BrokerLink._on_disconnect` runs in the same thread right after.
_socket_errors = threading.local()
_SOCKET_ERROR_PREFIXES = ("failed to receive on socket: ", "timeout on socket: ")


def _take_socket_error() -> str | None:
    error: str | None = getattr(_socket_errors, "last", None)
    _socket_errors.last = None
    return error


class _NoRepeats(logging.Filter):
    """paho logs the same error on every retry while the broker is away or refusing us
    ("Client is not connected", "failed to receive on socket: ..."); one line per streak of
    identical messages is enough, since `BrokerLink` reports the outage itself."""

    def __init__(self) -> None:
        super().__init__()
        self._last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        for prefix in _SOCKET_ERROR_PREFIXES:
            if text.startswith(prefix):
                _socket_errors.last = text.removeprefix(prefix)
        if text.startswith("Client is not connected"):
            return False
        if text == self._last:
            return False
        self._last = text
        return True


_paho_log.addFilter(_NoRepeats())
_paho_log.setLevel(logging.WARNING)  # its DEBUG is one line per packet


class MqttSetupError(Exception):
    """The settings cannot work at all (unreadable CA or password file): one clear line."""


def tls_context(settings: MqttSettings) -> ssl.SSLContext:
    """The TLS context for `settings` (the daemon's link and `p1daemon watch` alike);
    raises MqttSetupError with one line naming what could not be loaded."""
    try:
        context = ssl.create_default_context(
            cafile=str(settings.ca_file) if settings.ca_file is not None else None
        )
        if settings.cert_file is not None and settings.key_file is not None:
            context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise MqttSetupError(f"mqtt TLS files: {exc}") from exc
    if settings.tls_insecure:
        # Only when the user asked for it in so many words (tls_insecure = true).
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ReconnectDelays:
    """How long to wait before each connection attempt of one outage.

    0.1 s first (a dropped connection to a broker that is there is back at once), then
    0.25 and 0.5 s, then about once a second for some ten seconds (a broker restart is
    over within those: it costs well under a second after the broker listens again),
    then doubling up to `cap` for a broker that stays away. Every delay is jittered by
    +-20 % (never beyond `cap`) so that many clients of one broker do not come back in
    lockstep.
    """

    _STEADY = (0.25, 0.5) + (1.0,) * 8

    def __init__(self, cap: float, rng: random.Random | None = None) -> None:
        self.cap = max(0.1, cap)
        self._rng = rng or random.Random()
        self._attempt = 0

    def reset(self) -> None:
        """Connected: the next outage starts with the quick retry again."""
        self._attempt = 0

    def next(self) -> float:
        attempt = self._attempt
        self._attempt += 1
        if attempt == 0:
            return self._rng.uniform(0.05, 0.15)
        if attempt <= len(self._STEADY):
            base = self._STEADY[attempt - 1]
        else:
            base = 2.0 ** min(attempt - len(self._STEADY), 16)
        return min(self.cap, base * self._rng.uniform(0.8, 1.2))


def disconnect_reason(
    flags: Any, reason_code: Any, socket_error: str | None, keepalive: int
) -> str:
    """What ended an accepted connection, in words (paho 2.x says "Unspecified error" for
    a broker closing the socket and for a network failure alike)."""
    name = str(reason_code)
    if getattr(flags, "is_disconnect_packet_from_server", False):
        return f"the broker closed the connection ({name})"
    if name == "Keep alive timeout":
        return f"keepalive timeout: the broker did not answer for {keepalive} s"
    if socket_error:
        return f"network error: {socket_error}"
    if name == "Unspecified error":
        return "the broker closed the connection"
    if name == "Protocol error":
        return "protocol error: the broker sent something paho could not read"
    return name


_SENT = MQTTErrorCode.MQTT_ERR_SUCCESS
_NO_CONNECTION = MQTTErrorCode.MQTT_ERR_NO_CONN

# Messages from subscriptions waiting for the worker; more means nobody is taking them
# (or someone floods the topic): the oldest are dropped rather than growing memory.
_MAX_MESSAGES = 100


class BrokerLink:
    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        wake: Callable[[], None],
        *,
        subscriptions: Sequence[str] = (),
    ) -> None:
        self.settings = settings
        self._wake = wake
        self.subscriptions = tuple(subscriptions)
        # Written by paho's thread, read by the worker. Single attribute stores and
        # deque.append/popleft are atomic in CPython; see the module docstring for why
        # there is no lock here.
        self.acks: deque[int] = deque()
        self.messages: deque[tuple[str, bytes]] = deque(maxlen=_MAX_MESSAGES)
        self.connected = False
        self.generation = 0  # +1 on every accepted connection
        self.connects = 0
        self.attempt_failures = 0
        self.receive_maximum: int | None = None
        self.rejected = 0  # MQTT 5 PUBACKs with a failure reason
        self._rejections_logged: set[str] = set()
        self.problem: str | None = None  # why we are not connected, for status lines
        self._logged_problem: str | None = None
        self._stopping = False
        self._refused = False  # the broker answered this attempt with a refusing CONNACK
        self._dropped_because: str | None = None  # set by drop_connection
        self.dropped = 0  # connections dropped by us because the broker stopped acknowledging
        self.delays = ReconnectDelays(settings.reconnect_max_delay_s)
        self._client = self._build(topics)

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _build(self, topics: Topics) -> mqtt.Client:
        s = self.settings
        protocol = MQTTProtocolVersion.MQTTv5 if s.protocol == "5" else MQTTProtocolVersion.MQTTv311
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=protocol,
            reconnect_on_failure=True,
        )
        client.enable_logger(_paho_log)  # paho's own errors (e.g. in a callback) stay visible
        if s.username:
            try:
                password = s.resolved_password()
            except OSError as exc:
                raise MqttSetupError(f"mqtt.password_file: cannot read it: {exc}") from exc
            client.username_pw_set(s.username, password)
        if s.tls:
            self._set_tls(client)
        client.will_set(topics.status, "offline", qos=1, retain=True)
        # Only a fallback: our callbacks set the delay before each of paho's waits.
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(s.reconnect_max_delay_s)))
        # The pipeline bounds what is in flight itself (its window, or the broker's receive
        # maximum). paho's own limit (20) would queue the rest of that window and walk
        # all of its messages on every PUBACK to find the next one to send.
        client.max_inflight_messages_set(0)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _set_tls(self, client: mqtt.Client) -> None:
        client.tls_set_context(tls_context(self.settings))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule the first connection and return at once; paho's thread does the rest."""
        kwargs: dict[str, Any] = {}
        if self.settings.protocol == "5":
            kwargs["clean_start"] = True
        self._client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive, **kwargs
        )
        self._client.loop_start()

    def stop(self, timeout: float) -> None:
        """Disconnect cleanly (the broker then does not send the will) and end paho's thread."""
        self._stopping = True
        try:
            self._client.disconnect()
        except Exception as exc:  # paho may raise on a half-open socket; we are leaving anyway
            log.debug("disconnect: %s", exc)
        # loop_stop() joins without a timeout; a stuck TCP connect must not hold up SIGTERM.
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(max(0.0, timeout))
        if stopper.is_alive():
            log.warning("MQTT network thread did not stop within %.1f s; leaving it", timeout)
        self.connected = False

    def drop_connection(self, reason: str) -> None:
        """End the current connection so that paho reconnects and re-sends what is in flight.

        Called from the publisher's worker thread. Shutting the socket down (not closing
        it: paho's thread still owns the descriptor) makes paho's next read see the end
        of the connection and go through its usual reconnect, with our delays."""
        sock = self._client.socket()
        if not isinstance(sock, socket.socket) or not self.connected:
            return  # not connected (an SSLSocket is a socket.socket too)
        self._dropped_because = reason
        self.dropped += 1
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # already gone: paho is noticing by itself
            log.debug("shutting the MQTT socket down: %s", exc)

    def _next_delay(self) -> None:
        """Set the wait before paho's next attempt. paho calls on_connect_fail or
        on_disconnect before every wait; a min and max delay both set to one value, with
        paho's backoff state reset by the call, make that wait exactly our value."""
        delay = self.delays.next()
        # paho annotates whole seconds but computes with any number.
        self._client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> int | None:
        """The message id if paho took the message (sent, or kept for after a reconnect)."""
        try:
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:
            log.error("cannot publish to %s: %s", topic, exc)
            return None
        rc = info.rc
        if rc == _SENT:
            return int(info.mid)
        if rc == _NO_CONNECTION and qos:  # kept by paho for after the reconnect
            return int(info.mid)
        return None  # refused, or QoS 0 that paho drops when it cannot send it

    # -- paho callbacks (paho's network thread) --------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            self.attempt_failures += 1
            self._refused = True
            self._report(f"the broker refused the connection: {reason_code}")
            return
        self.receive_maximum = getattr(properties, "ReceiveMaximum", None)
        for topic in self.subscriptions:
            # Renewed on every connection: a clean session forgets subscriptions.
            client.subscribe(topic, qos=1)
        self.connects += 1
        self.generation += 1
        self.connected = True
        self.problem = None
        self.delays.reset()
        _take_socket_error()  # whatever failed before this connection is history
        if self._logged_problem is not None or self.connects == 1:
            log.info("connected to MQTT broker %s", self.where)
        self._logged_problem = None
        self._wake()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        # paho calls this from inside its `except OSError` block, so the exception that
        # made the attempt fail (refused, TLS verification, DNS) is still the current one.
        exc = sys.exception()
        self.attempt_failures += 1
        self._next_delay()
        self._report(f"cannot connect: {exc}" if exc else "cannot connect")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was_connected = self.connected
        self.connected = False
        refused, self._refused = self._refused, False
        dropped, self._dropped_because = self._dropped_because, None
        socket_error = _take_socket_error()
        self._next_delay()
        if self._stopping:
            pass
        elif was_connected and dropped is not None:
            self._report(f"reconnecting: {dropped}")
        elif was_connected:
            why = disconnect_reason(flags, reason_code, socket_error, self.settings.keepalive)
            self._report(f"lost the connection: {why}")
        elif not refused:
            # TCP was accepted but the MQTT handshake never completed (e.g. plain MQTT
            # to a TLS port): count it as a failed attempt so it is visible too.
            self.attempt_failures += 1
            self._report(f"the connection closed before the broker accepted it: {reason_code}")
        self._wake()

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any
    ) -> None:
        if reason_code is not None and reason_code.is_failure:
            # MQTT 5 only: the broker answered but will not deliver (e.g. an ACL denies the
            # topic). Re-sending would be refused forever and hold up every later reading,
            # so it counts as done - visibly: counted, and logged once per reason.
            self.rejected += 1
            reason = str(reason_code)
            if reason not in self._rejections_logged:
                self._rejections_logged.add(reason)
                log.error("MQTT broker %s refused a published message: %s", self.where, reason)
        acks = self.acks
        acks.append(mid)
        # Only the first acknowledgement the worker has not taken yet wakes it: its round
        # takes every one queued by then (`Pipeline.take_acks` empties the deque), so a
        # burst of PUBACKs read in one go costs one wake-up, not one each. Appending
        # first and counting after cannot miss one: if the worker emptied the deque in
        # between, it took this one too.
        if len(acks) == 1:
            self._wake()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.append((message.topic, bytes(message.payload)))
        self._wake()

    def _report(self, problem: str) -> None:
        """Log a connection problem once, not on every retry: the same reason is one line."""
        self.problem = problem
        if problem != self._logged_problem:
            self._logged_problem = problem
            log.warning(
                "MQTT broker %s: %s; retrying with backoff (at most %g s apart)",
                self.where,
                problem,
                self.settings.reconnect_max_delay_s,
            )
