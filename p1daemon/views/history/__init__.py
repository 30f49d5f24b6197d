"""The settlement history: every closed quarter-hour per metering point, kept on the Pi."""
