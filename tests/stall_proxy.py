"""A loopback TCP proxy in front of a real broker that can misbehave on demand.

It forwards everything both ways (CONNECT, PUBLISH, PINGREQ/PINGRESP ...), reading the
broker's side packet by packet (MQTT framing: one type byte, a variable-length
"remaining length", then that many bytes) so that it can:

- `swallow_pubacks = True`: drop every PUBACK the broker sends - a broker that keeps the
  connection and answers pings but never acknowledges;
- `reset_all()`: end every connection with a TCP reset (a network error, not a close).
"""

from __future__ import annotations

import select
import socket
import struct
import threading

PUBACK = 4
PINGRESP = 13


class StallProxy:
    def __init__(self, broker_host: str, broker_port: int) -> None:
        self.target = (broker_host, broker_port)
        self.swallow_pubacks = False
        self.swallowed = 0
        self.pingresps = 0  # PINGRESPs the broker sent (keepalive pings answered)
        self.connections = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._resets = 0
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()  # no broker behind us: the client sees a closed connection
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._pair, args=(client, upstream), daemon=True).start()

    def _pair(self, client: socket.socket, broker: socket.socket) -> None:
        """One thread per connection, so that a reset is done by the only thread using it."""
        reset_seen = self._resets
        from_broker = b""
        try:
            while not self._closed:
                if self._resets != reset_seen:
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                readable, _, _ = select.select([client, broker], [], [], 0.02)
                if client in readable:
                    data = client.recv(65536)
                    if not data:
                        return
                    broker.sendall(data)
                if broker in readable:
                    data = broker.recv(65536)
                    if not data:
                        return
                    from_broker += data
                    while (size := _split(from_broker)) is not None:
                        packet, from_broker = from_broker[:size], from_broker[size:]
                        if packet[0] >> 4 == PINGRESP:
                            self.pingresps += 1
                        if self.swallow_pubacks and packet[0] >> 4 == PUBACK:
                            self.swallowed += 1
                            continue
                        client.sendall(packet)
        except OSError:
            pass
        finally:
            client.close()
            broker.close()

    def reset_all(self) -> None:
        """Every open connection ends with a TCP RST (SO_LINGER 0), as a failing network."""
        self._resets += 1

    def close(self) -> None:
        self._closed = True
        self._listener.close()


def _split(buffer: bytes) -> int | None:
    """The length of the first complete packet in `buffer`, or None if it is not all there."""
    if len(buffer) < 2:
        return None
    length, multiplier, index = 0, 1, 1
    while True:
        if index >= len(buffer):
            return None
        byte = buffer[index]
        length += (byte & 0x7F) * multiplier
        multiplier *= 128
        index += 1
        if not byte & 0x80:
            break
        if index > 4:
            raise OSError("malformed remaining length")
    total = index + length
    return total if len(buffer) >= total else None
