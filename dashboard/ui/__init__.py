"""The operator's web page: static files under `static/` (the live feed behind them is
`observe/live.py`).

The page is plain HTML/CSS/JS with no build step and no CDN; it talks to the same REST API as
`proxyctl`, plus a few read endpoints and a server-sent-events stream (`api/routes.py`).
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
