"""p1daemon: DSMR P1 telegrams to MQTT, without losing a reading."""

__version__ = "0.1.0"
