"""`ServeOutput`: the dispatcher's output that hands each meter's telegrams on over TCP.

It takes no readings or documents, only `on_telegram(meter, raw)` (the dispatcher calls
it for outputs that have it, right after the reading was accepted, under its lock, so
the telegrams of one meter keep their order): `raw` is the telegram exactly as the
daemon accepted it, CRC-valid, the plaintext for a Smarty meter. One `TelegramServer`
per meter with `serve` set; a reload starts, stops or re-binds them as the meters'
`serve` keys now say (other servers and their clients are not touched).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from p1daemon.daemon.processor import Document, EventSink
from p1daemon.reading.meter import MeterReading
from p1daemon.serve.address import parse_listen_address
from p1daemon.serve.server import BACKLOG_TELEGRAMS, ServeError, TelegramServer

if TYPE_CHECKING:
    from p1daemon.config.model import Config, MeterConfig

log = logging.getLogger(__name__)


class ServeCounts(Protocol):
    """Where a server counts its clients: the meter's `MeterStats` (health)."""

    def set_serving(self, address: str | None) -> None: ...

    def count_serve(
        self,
        *,
        connected: int = 0,
        gone: int = 0,
        refused: int = 0,
        dropped: int = 0,
        lost: int = 0,
    ) -> None: ...


StatsOf = Callable[[str], ServeCounts | None]


def _no_stats(meter: str) -> ServeCounts | None:
    return None


def serving_meters(config: Config) -> list[MeterConfig]:
    return [m for m in config.meters if m.serve is not None]


class ServeOutput:
    """See the module docstring. `stats_of(meter)` gives the meter's counters (looked up
    when a server starts, so it may close over a daemon that does not exist yet)."""

    name = "serve"

    def __init__(
        self,
        config: Config,
        *,
        stats_of: StatsOf = _no_stats,
        backlog: int = BACKLOG_TELEGRAMS,
    ) -> None:
        self._meters = {m.name: m for m in serving_meters(config)}
        self._stats_of = stats_of
        self._backlog = backlog
        # Replaced as a whole on reload, so a reader's lookup never sees it half-changed.
        self._servers: dict[str, TelegramServer] = {}
        # The counters each server was started with: a removed meter's are not looked up
        # again (that would bring it back into the health reports).
        self._counts: dict[str, ServeCounts] = {}

    @property
    def servers(self) -> dict[str, TelegramServer]:
        return dict(self._servers)

    # -- Output ------------------------------------------------------------------------

    def start(self, subscriptions: Sequence[str] = (), events: EventSink | None = None) -> None:
        """Bind every server now; the first that cannot makes the daemon exit (one line)."""
        servers: dict[str, TelegramServer] = {}
        try:
            for meter in self._meters.values():
                servers[meter.name] = self._start_server(meter)
        except ServeError:
            for server in servers.values():
                self._stop_server(server)
            raise
        self._servers = servers

    def on_reading(self, reading: MeterReading) -> None:
        """Readings are the other outputs' business; this one serves the raw telegrams."""

    def on_telegram(self, meter: str, raw: bytes) -> None:
        server = self._servers.get(meter)
        if server is not None:
            server.send(raw)

    def on_documents(self, documents: Sequence[Document]) -> None:
        """Documents are MQTT's and stdout's business."""

    def stop(self, timeout: float) -> None:
        servers, self._servers = self._servers, {}
        for server in servers.values():
            self._stop_server(server, timeout / max(1, len(servers)))

    # -- Reconfigurable ----------------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Start, stop or re-bind servers whose meter's `serve` settings changed."""
        new_meters = {m.name: m for m in serving_meters(config)}
        servers = dict(self._servers)
        for name, server in list(servers.items()):
            meter = new_meters.get(name)
            if meter is None or meter.serve != server.address.text:
                self._stop_server(servers.pop(name))
                if meter is None:
                    log.info("meter %s: no longer served", name)
            elif meter.serve_max_clients != server.max_clients:
                server.max_clients = meter.serve_max_clients  # applies to new clients
        for name, meter in new_meters.items():
            if name in servers:
                continue
            try:
                servers[name] = self._start_server(meter)
            except ServeError as exc:  # a reload must not take the daemon down
                log.error("%s; this meter is not served until the next reload", exc)
        self._meters = new_meters
        self._servers = servers

    # -- status ------------------------------------------------------------------------

    def status(self) -> str:
        servers = self._servers
        if not servers:
            return ""
        return f"{sum(s.clients for s in servers.values())} served client(s)"

    def healthy(self) -> bool:
        return all(server.alive() for server in self._servers.values())

    # -- internals ---------------------------------------------------------------------

    def _start_server(self, meter: MeterConfig) -> TelegramServer:
        assert meter.serve is not None
        address = parse_listen_address(meter.serve)
        stats = self._stats_of(meter.name)
        server = TelegramServer(
            f"meter {meter.name}",
            address,
            max_clients=meter.serve_max_clients,
            count=stats.count_serve if stats is not None else _ignore,
            backlog=self._backlog,
        )
        try:
            server.start()
        except ServeError as exc:
            raise ServeError(f"meter {meter.name}: {exc}") from None
        if stats is not None:
            stats.set_serving(address.text)
            self._counts[meter.name] = stats
        return server

    def _stop_server(self, server: TelegramServer, timeout: float = 1.0) -> None:
        server.stop(timeout)
        stats = self._counts.pop(server.label.removeprefix("meter "), None)
        if stats is not None:
            stats.set_serving(None)


def _ignore(**counts: int) -> None:
    return None


__all__ = ["ServeCounts", "ServeError", "ServeOutput", "serving_meters"]
