"""tokenway gateway: the running side (sockets, loop, routing, ledger, auth, CLI)."""

__version__ = "0.1.0"
