"""MQTT publishing with a durable outbox: no reading lost across outages and restarts.

`sink.MqttSink` is what the daemon uses; `pipeline` holds the ordering and durability
rules, `outbox` the SQLite file (and the durability trade-off), `client` the broker
connection, `health` the retained reports, `settings` the `[mqtt]` and `[buffer]` keys.
Importing this package does not import paho: the configuration loader only needs
`settings`.
"""
