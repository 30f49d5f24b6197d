"""Home Assistant MQTT discovery: which entities each metering point gets, and when.

Everything here is pure: it turns readings into (topic, payload) messages and leaves
publishing them to the MQTT layer.
"""
