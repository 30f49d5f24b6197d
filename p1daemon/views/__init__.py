"""Processors: what the daemon derives from readings (energy views, Home Assistant
discovery, later the settlement history and the capacity watch).

The path of a reading: `source/ -> frame/ -> parse/ -> reading/ -> daemon/` (dispatch)
`-> views/...` (processors) `-> publish/`, stdout (outputs). Nothing in `publish/`
imports from here.
"""
