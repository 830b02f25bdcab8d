"""The cluster contract shared by the proxy and the dashboard.

Pure: no asyncio, no sockets. `proxy/` and `dashboard/` both import this package and never each
other. What lives here is what both sides must agree on byte for byte: how a key maps to a slot,
how slot ranges are written, the slot map and its JSON, RESP framing, `host:port`, the admin API's
paths and the admin token's precedence.
"""
