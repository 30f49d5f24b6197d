"""Processors and outputs from the configuration, in one place; and what a reload rebuilds.

    dispatcher = build(config, outputs=[MqttSink.from_config(config, ...)])
    daemon = Daemon(config, dispatcher, ...)   # the dispatcher is the daemon's sink

Each processor comes from a `ProcessorFactory`: `build(config, persist)` makes it (None:
not wanted by this configuration, e.g. discovery switched off). On reload
(`Daemon.apply_config` -> `Dispatcher.apply_config` -> `Builder.reload`) every factory
is asked again: a processor that is no longer wanted is stopped, a newly wanted one is
started (and hears of a broker connection that already exists), and one that stays gets
the new configuration through `on_reload` when it has one (keeping its state: the energy
views keep their running quarters, discovery removes the entities of a removed meter),
and is otherwise rebuilt (`stop` on the old, `start` on the new). Readings keep flowing
meanwhile: the swap happens under the dispatcher's lock, between two readings.

Outputs are built by the caller (the `run` command: the MQTT sink or stdout); they get
the reload too when they are `Reconfigurable` (the MQTT sink: publishing intervals).
Extra factories (tests, later features) are passed to `build` and become part of the
list the reload walks. `build` adds the TCP fan-out (`p1daemon.serve.ServeOutput`) to the
caller's outputs, always: it costs nothing while no meter has `serve` set, and a reload
that sets it on a meter then finds it there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from p1daemon.daemon.dispatcher import Dispatcher
from p1daemon.daemon.processor import Document, Output, Processor, Reloadable
from p1daemon.daemon.sink import Reconfigurable

if TYPE_CHECKING:
    from p1daemon.config.model import Config
    from p1daemon.serve.output import StatsOf

log = logging.getLogger("p1daemon.dispatch")


@dataclass(frozen=True, slots=True)
class ProcessorFactory:
    """`wanted(config)`: does this configuration want the processor at all (discovery
    switched on, any meter configured). `build(config, persist)` makes it; `persist` is
    False for `run --stdout`, which must not touch a running daemon's saved state."""

    name: str
    wanted: Callable[[Config, bool], bool]
    build: Callable[[Config, bool], Processor]


# A processor's module is imported by its `build` only, so that a configuration that does
# not want it does not pay for its imports (SQLite for the history, the capacity models,
# the discovery tables): the `wanted` checks read the configuration alone.


def _energy_wanted(config: Config, persist: bool) -> bool:
    return bool(config.meters)


def _energy(config: Config, persist: bool) -> Processor:
    from p1daemon.views.energy.processor import EnergyProcessor

    return EnergyProcessor.from_config(config, persist=persist)


def _discovery_wanted(config: Config, persist: bool) -> bool:
    # Only with a broker: the configs are for Home Assistant's MQTT integration.
    return persist and config.homeassistant.discovery


def _discovery(config: Config, persist: bool) -> Processor:
    from p1daemon.views.homeassistant.processor import DiscoveryProcessor

    return DiscoveryProcessor.from_config(config)


def _capacity_wanted(config: Config, persist: bool) -> bool:
    # As p1daemon.views.capacity.processor.wanted, without importing it.
    return any(m.capacity != "off" for m in config.meters)


def _capacity(config: Config, persist: bool) -> Processor:
    from p1daemon.views.capacity.processor import CapacityProcessor

    return CapacityProcessor.from_config(config)


def _history_wanted(config: Config, persist: bool) -> bool:
    # As HistoryProcessor.wanted, without importing it.
    return persist and config.history.enabled and bool(config.meters)


def _history(config: Config, persist: bool) -> Processor:
    from p1daemon.views.history.processor import HistoryProcessor

    return HistoryProcessor.from_config(config)


# In this order on every reading: discovery first, as before the dispatcher existed.
STANDARD: tuple[ProcessorFactory, ...] = (
    ProcessorFactory("homeassistant", _discovery_wanted, _discovery),
    ProcessorFactory("energy", _energy_wanted, _energy),
    ProcessorFactory("capacity", _capacity_wanted, _capacity),
    ProcessorFactory("history", _history_wanted, _history),
)


class Builder:
    """Holds the factories and the configuration the processors were built from."""

    def __init__(
        self, config: Config, factories: Sequence[ProcessorFactory], *, persist: bool
    ) -> None:
        self.config = config
        self.factories = tuple(factories)
        self.persist = persist
        self._built: dict[str, Processor] = {}  # factory name -> its processor

    def processors(self) -> list[Processor]:
        for factory in self.factories:
            if factory.wanted(self.config, self.persist):
                self._built[factory.name] = factory.build(self.config, self.persist)
        return list(self._built.values())

    def reload(self, dispatcher: Dispatcher, new: Config) -> None:
        """Apply `new` to every processor and every reconfigurable output (main thread)."""
        before = dispatcher.subscriptions()
        with dispatcher.lock:
            built: dict[str, Processor] = {}
            for factory in self.factories:
                old = self._built.get(factory.name)
                processor = self._reload_one(dispatcher, factory, old, new)
                if processor is not None:
                    built[factory.name] = processor
            self._built = built
            dispatcher.replace_processors(list(built.values()))
            self.config = new
        for output in dispatcher.outputs:
            if isinstance(output, Reconfigurable):
                try:
                    output.apply_config(new)
                except Exception:
                    log.exception("output %s could not apply the new configuration", output.name)
        if dispatcher.subscriptions() != before:
            log.warning(
                "the Home Assistant status topic changed: it is subscribed to after a restart"
            )

    def _reload_one(
        self,
        dispatcher: Dispatcher,
        factory: ProcessorFactory,
        old: Processor | None,
        new: Config,
    ) -> Processor | None:
        """The processor for `new` (caller holds the dispatcher's lock)."""
        wanted = factory.wanted(new, self.persist)
        if old is not None and wanted and isinstance(old, Reloadable):
            result: Sequence[Document] | None = None
            try:
                result = old.on_reload(new)
            except Exception:
                log.exception("%s could not take the new configuration; rebuilt", factory.name)
            if result is not None:
                dispatcher.deliver(result)
                return old
        if old is not None:
            dispatcher.deliver(dispatcher.call(old, "stop", old.stop))
            if not wanted:
                log.info("%s: stopped (not wanted by the new configuration)", factory.name)
        if not wanted:
            return None
        try:
            processor = factory.build(new, self.persist)
        except Exception:
            log.exception("%s: could not be built from the new configuration", factory.name)
            return None
        log.info("%s: %s for the new configuration", factory.name, "rebuilt" if old else "started")
        return processor


def build(
    config: Config,
    outputs: Sequence[Output],
    *,
    persist: bool = True,
    extra: Sequence[ProcessorFactory] = (),
    serve_stats: StatsOf | None = None,
) -> Dispatcher:
    """The dispatcher for `config`: the standard processors, then `extra`, into `outputs`
    and the TCP fan-out (`serve_stats(meter)`: where it counts its clients, for health)."""
    from p1daemon.serve.output import ServeOutput

    builder = Builder(config, [*STANDARD, *extra], persist=persist)
    serve = (
        ServeOutput(config) if serve_stats is None else ServeOutput(config, stats_of=serve_stats)
    )
    return Dispatcher(builder.processors(), [*outputs, serve], reconfigure=builder.reload)


__all__ = ["STANDARD", "Builder", "ProcessorFactory", "build"]
