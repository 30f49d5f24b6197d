"""Energy views per metering point and per connection, and the export cap check.

Pure and fed one reading at a time; publishing the documents is the MQTT layer's job.
"""
