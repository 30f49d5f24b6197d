"""The connection to the broker: paho-mqtt 2.x set up once, watched, and never waited on.

paho's network I/O runs on the publisher's worker thread, not on a thread of paho's own
(no `loop_start`): the worker sleeps in `wait`, a `poll()` on paho's socket and the
worker's wake-up pipe, and calls paho's `loop_read`, `loop_write` and `loop_misc`
(keepalive pings) itself. What a round publishes is written when the round is over, in
one go and outside the pipeline's lock (`_write_later`), and acknowledgements are booked
in the same thread that reads them: no hand-off between threads per message (paho's
wake-up of its thread on every publish, the PUBACK's wake-up of the worker), one thread
less.

Reconnecting is ours too, since paho's own (`loop_forever`) lives in the thread we do
not start. The delay before each attempt comes from `ReconnectDelays`: a quick first
retry, then a few retries within the first seconds so that a broker restart costs well
under a second, then exponential backoff with jitter up to `reconnect_max_delay_s` for a
broker that stays away. An attempt (paho's `reconnect()`: DNS, TCP and TLS handshake,
blocking for up to paho's connect timeout) runs on a short-lived `mqtt-connect` thread,
so that the worker goes on writing readings to the outbox meanwhile; paho is left alone
by the worker until the attempt has ended, and the worker reads the CONNACK.

A broker that keeps the connection and answers pings but never acknowledges what we
publish would stall delivery for ever; the pipeline notices (`ack_timeout_s`) and calls
`drop_connection`, which makes paho see the connection end and reconnect, re-sending
what was in flight.

Besides publishing, the link can subscribe to a few topics (`subscriptions`, renewed on
every connection, e.g. Home Assistant's `homeassistant/status`): what arrives there is
queued in `messages` for the publisher's worker, like acknowledgements.

The callbacks below never take the publisher's lock: they run in the worker, and that
lock is not re-entrant, so a callback reached from inside a round (paho ends a
connection on a failed write wherever that write happens) would deadlock the worker. So
callbacks only record what happened (an acknowledged message id, a new connection) for
the worker's next round, which `wait` starts at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from p1daemon.publish.settings import MqttSettings
from p1daemon.publish.topics import Topics
from p1daemon.publish.wakeup import Wakeup

log = logging.getLogger("p1daemon.publish")
_paho_log = logging.getLogger("p1daemon.publish.paho")


# The socket error paho logged last in this thread (the worker, which does paho's network
# I/O): paho reports a reset connection and a broker closing it alike as "connection
# lost", and only its log line tells them apart. `BrokerLink._on_disconnect` runs in the
# same thread right after.
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

# How often paho's `loop_misc` runs (keepalive pings, and giving up on a broker that
# does not answer them) when its deadline cannot be read from paho (`_misc_due`).
_MISC_EVERY_S = 1.0
_SLACK_S = 0.001  # an attempt this close to due is due: no poll for float crumbs

_IN = select.POLLIN
_IN_OUT = select.POLLIN | select.POLLOUT


def _write_later(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho's "socket has data to write" callback: nothing to do, `BrokerLink.wait` writes."""


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
        self._wake = wake  # for the connection attempt's thread, when the attempt is over
        self.subscriptions = tuple(subscriptions)
        # Written by paho's callbacks in the worker thread, read by the same thread's
        # rounds; readers of the status lines look at them from others (single stores).
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
        self._started = False
        self._refused = False  # the broker answered this attempt with a refusing CONNACK
        self._dropped_because: str | None = None  # set by drop_connection
        self.dropped = 0  # connections dropped by us because the broker stopped acknowledging
        self.delays = ReconnectDelays(settings.reconnect_max_delay_s)
        # The connection attempt under way (it owns paho until it ends), and what made it fail.
        self._connector: threading.Thread | None = None
        self._attempt_error: BaseException | None = None
        self._next_attempt: float | None = None  # monotonic; None while connected or trying
        self._poll = select.poll()
        self._polled: Any = None  # the paho socket registered in `_poll`, and its fd and mask
        self._polled_fd = -1
        self._polled_mask = 0
        self._wake_fd = -1  # the worker's Wakeup, registered in `_poll` at its first wait
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
        # The pipeline bounds what is in flight itself (its window, or the broker's receive
        # maximum). paho's own limit (20) would queue the rest of that window and walk
        # all of its messages on every PUBACK to find the next one to send.
        client.max_inflight_messages_set(0)
        # With this callback set, paho's publish() only queues the packet; `wait` writes
        # everything a round queued in one go, after the round. Written inside publish()
        # (paho's default without a thread) the sends happened under the pipeline's lock,
        # each one letting the GIL go while producers waited for that lock.
        client.on_socket_register_write = _write_later
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _set_tls(self, client: mqtt.Client) -> None:
        client.tls_set_context(tls_context(self.settings))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Schedule the first connection attempt and return at once (any thread)."""
        kwargs: dict[str, Any] = {}
        if self.settings.protocol == "5":
            kwargs["clean_start"] = True
        self._client.connect_async(
            self.settings.host, self.settings.port, keepalive=self.settings.keepalive, **kwargs
        )
        self._begin_attempt()
        self._started = True

    def stop(self, timeout: float) -> None:
        """Disconnect cleanly (the broker then does not send the will); worker thread,
        within `timeout` (a connection attempt stuck in TCP connect must not hold up SIGTERM)."""
        self._stopping = True
        deadline = time.monotonic() + max(0.0, timeout)
        connector = self._connector
        if connector is not None:
            connector.join(max(0.0, timeout))
            if connector.is_alive():
                log.warning("MQTT connection attempt still running after %.1f s; left", timeout)
                self.connected = False
                return
            self._connector = None
        client = self._client
        try:
            client.disconnect()  # written at once if the socket takes it, after what is queued
        except Exception as exc:  # paho may raise on a half-open socket; we are leaving anyway
            log.debug("disconnect: %s", exc)
        # What a full send buffer did not take at once goes out as it drains.
        while True:
            sock = client.socket()
            remaining = deadline - time.monotonic()
            if sock is None or not client.want_write() or remaining <= 0:
                break
            try:
                select.select([], [sock], [], remaining)
            except (OSError, ValueError):
                break
            client.loop_write()
        sock = client.socket()
        if sock is not None:  # DISCONNECT not out in time: the broker will send the will
            log.warning("MQTT disconnect not sent within %.1f s", timeout)
            with contextlib.suppress(OSError):
                sock.close()
        self._unregister_socket()
        self.connected = False

    def drop_connection(self, reason: str) -> None:
        """End the current connection so that we reconnect and paho re-sends what is in flight.

        Called from the worker thread. Shutting the socket down (not closing it: paho
        owns the descriptor) makes the next read see the end of the connection, which
        paho reports as usual (`_on_disconnect`), and the reconnect follows our delays."""
        sock = self._client.socket()
        if not isinstance(sock, socket.socket) or not self.connected:
            return  # not connected (an SSLSocket is a socket.socket too)
        self._dropped_because = reason
        self.dropped += 1
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # already gone: paho is noticing by itself
            log.debug("shutting the MQTT socket down: %s", exc)

    # -- the worker's network loop ---------------------------------------------------------

    def wait(self, timeout: float, wakeup: Wakeup) -> bool:
        """The worker's sleep: at most `timeout` (`math.inf`: no limit), until `wakeup` is
        set or the broker sends something, doing paho's network I/O meanwhile. Returns
        after any event, so that a round of the pipeline books what arrived
        (acknowledgements, a connection); True if it was an event (the wake-up or the
        socket), False if the time was up."""
        if self._wake_fd != wakeup.fileno():
            if self._wake_fd >= 0:
                self._poll.unregister(self._wake_fd)
            self._wake_fd = wakeup.fileno()
            self._poll.register(self._wake_fd, _IN)
        client = self._client
        if self._connector is None and client.want_write() and client.socket() is not None:
            client.loop_write()  # what the round published (see `_write_later`)
        sock = self._network(time.monotonic())
        now = time.monotonic()
        if self.acks or self.messages:
            timeout = 0.0  # a callback during the round (a QoS 0 message written): book it
        elif self._next_attempt is not None and sock is None:
            timeout = min(timeout, self._next_attempt - now)
        pending = 0
        if sock is not None:
            timeout = min(timeout, self._misc_due(now) - now)
            if isinstance(sock, ssl.SSLSocket):
                pending = sock.pending()  # decrypted bytes poll() cannot see
                if pending:
                    timeout = 0.0
        # No deadline at all (a round with nothing due, no socket to watch): sleep until
        # woken. poll() rounds a timeout up to whole milliseconds, so a deadline is reached.
        events = self._poll.poll(None if timeout == math.inf else max(0.0, timeout) * 1000.0)
        woken = readable = writable = False
        for fd, mask in events:
            if fd == self._wake_fd:
                woken = True
            elif mask & _IN_OUT == select.POLLOUT:
                writable = True
            else:
                readable = True  # incoming data, or the connection's end (POLLHUP, POLLERR)
                writable = bool(mask & select.POLLOUT)
        wakeup.consume(woken)
        if sock is None or client.socket() is not sock:
            return bool(events)
        if readable or pending:
            client.loop_read()
        if client.socket() is not None and (writable or client.want_write()):
            client.loop_write()  # what callbacks queued (subscriptions, CONNACK re-sends)
        now = time.monotonic()
        if client.socket() is not None and now >= self._misc_due(now):
            client.loop_misc()
        return bool(events) or bool(pending)

    def _misc_due(self, now: float) -> float:
        """When paho's `loop_misc` next has work: a PINGREQ is due once `keepalive` seconds
        passed since the last packet out or the last byte in, and the connection is given
        up once a PINGREQ went unanswered for as long (paho 2's `_check_keepalive` and
        `loop_misc`; the same test at the same instant, on the same monotonic clock).
        Calling it exactly then, rather than every second on the chance, lets an idle
        worker sleep until its next real deadline. Should paho keep these figures
        elsewhere one day, it is called every `_MISC_EVERY_S` again, as it once was."""
        client = self._client
        try:
            keepalive = client._keepalive
            due = min(client._last_msg_out, client._last_bytes_received) + keepalive
            pinged = client._ping_t
        except AttributeError:
            return now + _MISC_EVERY_S
        if not keepalive:
            return math.inf  # paho sends no pings and gives up on nothing
        if pinged > 0:
            due = min(due, pinged + keepalive)
        return float(due)

    def _network(self, now: float) -> Any:
        """Before the worker's poll: the paho socket to poll (None while there is none, or
        while a connection attempt owns paho); starts the attempt that is due."""
        if not self._started:
            return None
        connector = self._connector
        if connector is not None:
            if connector.is_alive():
                return None  # it wakes us when it is done
            connector.join()
            self._connector = None
            self._attempt_over(now)
        sock = self._client.socket()
        if sock is None:
            self._unregister_socket()
            if self._stopping:
                return None
            if self._next_attempt is None:
                # Gone without a word from paho (it always reports a disconnection, but a
                # missed retry would leave us offline for good).
                self._schedule_retry(now)
            elif now >= self._next_attempt - _SLACK_S:
                self._begin_attempt()
            return None
        if sock is not self._polled:
            self._unregister_socket()
            self._polled, self._polled_fd = sock, sock.fileno()
            self._polled_mask = _IN
            self._poll.register(self._polled_fd, _IN)
        mask = _IN_OUT if self._client.want_write() else _IN
        if mask != self._polled_mask:
            self._polled_mask = mask
            self._poll.modify(self._polled_fd, mask)
        return sock

    def _unregister_socket(self) -> None:
        if self._polled is not None:
            self._polled = None
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._poll.unregister(self._polled_fd)
            self._polled_fd = -1

    def _begin_attempt(self) -> None:
        self._next_attempt = None
        self._attempt_error = None
        connector = threading.Thread(target=self._attempt, name="mqtt-connect", daemon=True)
        self._connector = connector
        connector.start()

    def _attempt(self) -> None:
        """One connection attempt (its own thread): TCP, TLS, and sending CONNECT."""
        try:
            self._client.reconnect()
        except Exception as exc:  # refused, TLS verification, DNS, ...: reported by the worker
            self._attempt_error = exc
        finally:
            self._wake()

    def _attempt_over(self, now: float) -> None:
        exc, self._attempt_error = self._attempt_error, None
        if exc is None:
            return  # CONNECT is out: the CONNACK (or the connection's end) tells the rest
        self.attempt_failures += 1
        self._schedule_retry(now)
        self._report(f"cannot connect: {exc}")

    def _schedule_retry(self, now: float) -> None:
        self._next_attempt = now + self.delays.next()

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

    # -- paho callbacks (the worker thread, in `wait`) --------------------------------------------

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

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was_connected = self.connected
        self.connected = False
        refused, self._refused = self._refused, False
        dropped, self._dropped_because = self._dropped_because, None
        socket_error = _take_socket_error()
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
        if not self._stopping:
            self._schedule_retry(time.monotonic())

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
        # No wake-up: this runs in the worker's `wait`, whose return starts the round
        # that books it (`Pipeline.take_acks`), with every other one read in the same go.
        self.acks.append(mid)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.append((message.topic, bytes(message.payload)))

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
