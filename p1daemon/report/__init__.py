"""`p1daemon report`: the settlement history read back, per metering point and connection."""
