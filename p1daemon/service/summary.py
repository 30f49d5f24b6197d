"""A few lines that say what a configuration will do, for `check-config --summary`.

The installer checks the configuration on every run, and the full effective
configuration (every key with its default, about a hundred lines) buried the one thing
worth seeing there: which meters, which broker, where unsent readings wait. This is that
summary; `check-config` without `--summary` still prints every setting. Secrets never
appear, not even masked: a summary has no reason to mention them.
"""

from __future__ import annotations

from p1daemon.config.model import Config, MeterConfig


def config_summary(config: Config, label: str) -> str:
    """One line per meter plus broker, outbox, history and Home Assistant; ends with a newline."""
    mqtt = config.mqtt
    broker = f"{mqtt.host}:{mqtt.port}"
    how = ["TLS" if mqtt.tls else "no TLS"]
    if mqtt.username:
        how.append(f"user {mqtt.username}")
    ha = config.homeassistant
    lines = [
        f"{label}: valid, {len(config.meters)} meter(s)",
        *(f"  meter {_meter(meter)}" for meter in config.meters),
        f"  broker: {broker} ({', '.join(how)}), topics under {mqtt.topic_prefix}/",
        f"  outbox: {config.buffer.path} (at most {config.buffer.max_mb:g} MB)",
        "  settlement history: " + (f"{config.history.path}" if config.history.enabled else "off"),
        "  Home Assistant discovery: " + (f"on (prefix {ha.prefix})" if ha.discovery else "off"),
    ]
    return "\n".join(lines) + "\n"


def _meter(meter: MeterConfig) -> str:
    parts: list[str] = [meter.role]
    if meter.ean is not None:
        parts.append(f"EAN {meter.ean}")
    if meter.key is not None:
        parts.append("encrypted (Smarty)")
    return f"{meter.name} ({', '.join(parts)}): {meter.source}"
