"""`p1daemon watch`: what one site, or a whole fleet of them, says over MQTT, at a glance.

The package only ever reads the broker: it subscribes to the retained documents the
daemon keeps there (`latest`, `health`, `day`, `status`, the connection document and
alerts) and never to every `reading`, so watching costs a few JSON decodes a second.

    topics.py    which topics to subscribe to for a list of prefixes, and what a topic is
    state.py     the fleet as the documents describe it (fed by topic + payload)
    rules.py     what counts as a problem (offline, stale, silent, alerts, losses)
    layout.py    the view as lines of styled text, and the one-line-per-change records
    screen.py    drawing those lines on a terminal, in place, never past its width
    connect.py   the paho client: broker settings, TLS and credentials, no last will
    app.py       the loops (`--once`, terminal, pipe)
    cli.py       options to settings, errors to one line and an exit status
"""
