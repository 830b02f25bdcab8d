"""docker-compose.yml runs three sentinels and the dashboard's compose config names them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from dashboard.config import load

REPO = Path(__file__).resolve().parents[3]


def test_compose_runs_three_sentinels_the_dashboard_follows() -> None:
    done = subprocess.run(["docker-compose", "-f", str(REPO / "docker-compose.yml"), "config"],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SLOTPROXY_ADMIN_TOKEN": "t"})
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    for i in (1, 2, 3):
        svc = services[f"sentinel{i}"]
        assert "redis-sentinel /data/sentinel.conf" in svc["command"][-1]
        assert f"sentinel{i}" in services["dashboard"]["depends_on"]
    for g in (1, 2, 3):
        for side in "ab":
            cmd = services[f"redis{g}{side}"]["command"]
            # Each server announces its host name: the sentinels elect names the topology has.
            assert cmd[cmd.index("--replica-announce-ip") + 1] == f"redis{g}{side}"
    cfg = load(REPO / "etc/compose/dashboard.yaml", env={"SLOTPROXY_ADMIN_TOKEN": "t"})
    assert cfg.sentinels == ("sentinel1:26379", "sentinel2:26379", "sentinel3:26379")
    assert cfg.sentinel.quorum == 2
