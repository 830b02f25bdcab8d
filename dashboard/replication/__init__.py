"""Replicas and master switches: REPLICAOF on add/remove (`servers.py`), the planned promotion
(`promote.py`). Built on the control plane (every topology change goes through it) and on
`observe.redisconn` (the one way the dashboard connects to redis servers)."""
