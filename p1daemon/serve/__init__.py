"""Serve each meter's accepted telegrams to other programs over TCP (an output).

`address` parses `serve = "host:port"`, `server` is one meter's fan-out (one thread, a
selector, non-blocking sockets), `output` is the dispatcher's `Output` that owns one
server per serving meter, `check` is what `check-config` can tell in advance.
"""
