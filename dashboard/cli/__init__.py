"""proxyctl: `commands` (argument parsing, one function per command), `client` (the dashboard
API client, shared with `up`), `render` (tables and progress), `up` (a local cluster in the
foreground) and `procs` (real processes for `up` and the tests).

`main` is the console script `proxyctl` (and `python -m dashboard.cli`).
"""

from .commands import main

__all__ = ["main"]
