"""The operator's web page: static files under `static/` and the live feed behind them (`live.py`).

The page is plain HTML/CSS/JS with no build step and no CDN; it talks to the same REST API as
`proxyctl`, plus a few read endpoints and a server-sent-events stream registered in `api.py`.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
