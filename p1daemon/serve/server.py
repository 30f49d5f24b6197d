"""One meter's telegrams to every connected TCP client, ser2net raw-mode style.

The meter's reader must never wait for a client: `send` only appends the telegram to an
inbox and wakes the server's own thread, which does all socket work with non-blocking
sockets under one selector. Per client the thread keeps a queue of whole telegrams (the
same bytes objects for every client, never copied). A client whose queue is full loses
the next telegrams whole (what it receives is always a sequence of complete telegrams),
and after `backlog` telegrams lost in a row it is dropped: a reader that stalls cannot
make the daemon hold an unbounded amount for it, and cannot slow down anyone else.

Whatever a client sends is read and thrown away (the stream is read-only), so a chatty
client cannot fill the server's receive buffer either.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import selectors
import socket
import threading
from collections.abc import Callable

from p1daemon.serve.address import ListenAddress

log = logging.getLogger(__name__)

BACKLOG_TELEGRAMS = 8
"""Telegrams queued per client beyond what the kernel holds; as many lost in a row drop it."""

SEND_BUFFER_BYTES = 32 * 1024
"""A fixed kernel send buffer per client (a few seconds of telegrams): with autotuning
a stalled client on a fast link could sit on megabytes before it is noticed."""

_INBOX_MAX = 1024  # telegrams waiting for the server thread itself (it never stalls this long)
_RECV_DISCARD = 4096
_REFUSED_LOG_EVERY = 100


class ServeError(RuntimeError):
    """A server that cannot start (address in use, not local): one line for the user."""


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "the address is already in use (another program, or another p1daemon?)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "that address is not one of this machine's"
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def bind_listener(address: ListenAddress) -> socket.socket:
    """A bound, listening, non-blocking socket, or ServeError with the reason."""
    sock = socket.socket(address.family, socket.SOCK_STREAM)
    try:
        # A restart must not fail on the previous run's connections in TIME_WAIT; a port
        # another socket listens on still fails with EADDRINUSE.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.listen(8)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot serve on {address}: {_reason(exc)}") from None
    return sock


class _Client:
    __slots__ = (
        "gone",
        "lost",
        "lost_in_row",
        "offset",
        "peer",
        "pending",
        "sent",
        "sock",
        "writing",
    )

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.pending: collections.deque[bytes] = collections.deque()
        self.offset = 0  # bytes of pending[0] already sent
        self.lost = 0
        self.lost_in_row = 0
        self.sent = 0  # whole telegrams delivered to the kernel
        self.writing = False  # registered for EVENT_WRITE
        self.gone = False


Counter = Callable[..., None]


def _no_count(**counts: int) -> None:
    return None


class TelegramServer:
    """See the module docstring. `label` (e.g. "meter house") starts every log line."""

    def __init__(
        self,
        label: str,
        address: ListenAddress,
        *,
        max_clients: int,
        count: Counter = _no_count,
        backlog: int = BACKLOG_TELEGRAMS,
        send_buffer: int = SEND_BUFFER_BYTES,
    ) -> None:
        self.label = label
        self.address = address
        self.max_clients = max_clients
        self._count = count
        self._backlog = backlog
        self._send_buffer = send_buffer
        self._inbox: collections.deque[bytes] = collections.deque(maxlen=_INBOX_MAX)
        self._clients: dict[int, _Client] = {}
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"serve-{label.split()[-1]}", daemon=True
        )
        self._refused = 0

    # -- the daemon's side ---------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (useful when the address asked for port 0, as tests may)."""
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    @property
    def clients(self) -> int:
        return len(self._clients)

    def start(self) -> None:
        """Bind now (a port in use is a ServeError before the daemon says it is ready)."""
        self._listener = bind_listener(self.address)
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()
        where = "" if self.address.loopback else " (reachable from the network)"
        log.info("%s: serving telegrams on %s%s", self.label, self.address, where)

    def send(self, raw: bytes) -> None:
        """One accepted telegram, from the reader's thread: enqueue and wake, never wait."""
        if not self._clients:
            return  # nobody to serve: no wake-up either (read racily, by design)
        self._inbox.append(raw)
        # BlockingIOError: a wake-up is already pending; closed: stopping.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def alive(self) -> bool:
        return self._thread.is_alive() or self._stopping.is_set()

    def stop(self, timeout: float = 1.0) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("%s: the server thread did not stop in time", self.label)
            return
        self._close_all()

    # -- the server thread ---------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, mask in self._selector.select(timeout=1.0):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        client = self._clients.get(key.fd)
                        if client is None:
                            continue
                        if mask & selectors.EVENT_READ and not self._discard_input(client):
                            continue
                        if mask & selectors.EVENT_WRITE:
                            self._flush(client)
                self._distribute()
        except Exception:  # a bug: the clients lose their stream, the meter keeps reading
            log.exception("%s: the server failed; clients are disconnected", self.label)

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, peer_addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: keep serving the others
                log.warning("%s: cannot accept a client: %s", self.label, _reason(exc))
                return
            peer = _peer_text(peer_addr)
            if len(self._clients) >= self.max_clients:
                sock.close()
                self._refused += 1
                self._count(refused=1)
                level = (
                    logging.WARNING
                    if self._refused == 1 or self._refused % _REFUSED_LOG_EVERY == 0
                    else logging.DEBUG
                )
                log.log(
                    level,
                    "%s: refused client %s: already %d of %d (%d refused so far)",
                    self.label,
                    peer,
                    len(self._clients),
                    self.max_clients,
                    self._refused,
                )
                continue
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._send_buffer)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass
            client = _Client(sock, peer)
            self._clients[sock.fileno()] = client
            self._selector.register(sock, selectors.EVENT_READ, "client")
            self._count(connected=1)
            log.info(
                "%s: client %s connected (%d of %d)",
                self.label,
                peer,
                len(self._clients),
                self.max_clients,
            )

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _discard_input(self, client: _Client) -> bool:
        """Read and ignore what the client sent; False when it has gone."""
        try:
            data = client.sock.recv(_RECV_DISCARD)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as exc:
            self._remove(client, f"disconnected ({_reason(exc)})")
            return False
        if not data:
            self._remove(client, "disconnected")
            return False
        return True

    def _distribute(self) -> None:
        inbox = self._inbox
        while inbox:
            raw = inbox.popleft()
            for client in list(self._clients.values()):
                if len(client.pending) >= self._backlog:
                    self._flush(client)  # a burst from the reader: make room if it can
                    if client.gone:
                        continue
                if len(client.pending) < self._backlog:
                    client.pending.append(raw)
                    client.lost_in_row = 0
                    continue
                client.lost += 1
                client.lost_in_row += 1
                self._count(lost=1)
                if client.lost_in_row >= self._backlog:
                    self._remove(
                        client,
                        f"dropped: it stopped keeping up ({client.lost} telegram(s) lost)",
                        dropped=True,
                    )
        for client in list(self._clients.values()):
            if client.pending:
                self._flush(client)

    def _flush(self, client: _Client) -> None:
        pending = client.pending
        while pending:
            head = pending[0]
            try:
                sent = client.sock.send(memoryview(head)[client.offset :])
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._remove(client, f"disconnected ({_reason(exc)})")
                return
            client.offset += sent
            if client.offset < len(head):
                break
            pending.popleft()
            client.offset = 0
            client.sent += 1
        want_write = bool(pending)
        if want_write != client.writing:
            client.writing = want_write
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want_write else 0)
            self._selector.modify(client.sock, events, "client")

    def _remove(self, client: _Client, why: str, *, dropped: bool = False) -> None:
        fd = client.sock.fileno()
        if self._clients.pop(fd, None) is None:
            return
        client.gone = True
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        client.sock.close()
        self._count(gone=1, dropped=1 if dropped else 0)
        log.log(
            logging.WARNING if dropped else logging.INFO,
            "%s: client %s %s after %d telegram(s)",
            self.label,
            client.peer,
            why,
            client.sent,
        )

    def _close_all(self) -> None:
        for client in list(self._clients.values()):
            self._clients.pop(client.sock.fileno(), None)
            client.sock.close()
            self._count(gone=1)
        if self._clients:
            self._clients.clear()
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._selector.close()


def _peer_text(peer: object) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = str(peer[0]), peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(peer)


__all__ = ["BACKLOG_TELEGRAMS", "ServeError", "TelegramServer", "bind_listener"]
