"""docker-compose.yml is a valid deployment whose configs our own loaders accept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from dashboard.config import load as load_dashboard_config
from proxy.config import load_config as load_proxy_config

REPO = Path(__file__).resolve().parents[3]


def compose_config(token: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SLOTPROXY_ADMIN_TOKEN"}
    if token:
        env["SLOTPROXY_ADMIN_TOKEN"] = token
    # Debian's docker-compose package; only `config` is used, no docker engine is needed.
    return subprocess.run(["docker-compose", "-f", str(REPO / "docker-compose.yml"), "config"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid() -> None:
    quiet = subprocess.run(["docker-compose", "-f", str(REPO / "docker-compose.yml"), "config",
                            "-q"], cwd=REPO, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "SLOTPROXY_ADMIN_TOKEN": "t"})
    assert quiet.returncode == 0, quiet.stderr
    done = compose_config("s3cret")
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert {"etcd", "dashboard", "proxy1", "proxy2", "init"} <= set(services)
    for g in (1, 2, 3):
        assert f"redis{g}a" in services
        assert services[f"redis{g}b"]["command"][-3:] == ["--replicaof", f"redis{g}a", "6379"]
    assert services["dashboard"]["environment"]["SLOTPROXY_ADMIN_TOKEN"] == "s3cret"
    assert services["proxy1"]["environment"]["PROXY_CONFIG"] == "proxy-1.yaml"
    for svc in ("dashboard", "proxy1", "proxy2"):
        for port in services[svc]["ports"]:
            assert str(port.get("host_ip", port) if isinstance(port, dict) else port) \
                .startswith("127.0.0.1"), port


def test_compose_refuses_to_run_without_a_token() -> None:
    done = compose_config(None)
    assert done.returncode != 0 and "SLOTPROXY_ADMIN_TOKEN" in done.stderr


def test_compose_configs_load(tmp_path: Path) -> None:
    cfg = load_dashboard_config(REPO / "etc/compose/dashboard.yaml",
                                env={"SLOTPROXY_ADMIN_TOKEN": "t"})
    assert cfg.store.kind == "etcd" and cfg.store.endpoints == ("http://etcd:2379",)
    assert cfg.admin_token == "t"
    for i in (1, 2):
        text = (REPO / f"etc/compose/proxy-{i}.yaml").read_text()
        assert "__SLOTPROXY_ADMIN_TOKEN__" in text  # replaced by the service's command
        path = tmp_path / f"proxy-{i}.yaml"
        path.write_text(text.replace("__SLOTPROXY_ADMIN_TOKEN__", "t"))
        pcfg = load_proxy_config(str(path))
        assert pcfg.dashboard == "http://dashboard:18080"
        assert pcfg.proxy_id == f"proxy-{i}" and pcfg.admin_token == "t"
        assert pcfg.listen == (f"proxy{i}", 19000)


def test_compose_init_script_sets_up_groups_once(tmp_path: Path) -> None:
    """etc/compose/init.sh against a real dashboard: 3 groups, all slots, idempotent."""
    import sys

    from tests.harness import TOKEN, DashboardProcess, env

    bindir = tmp_path / "bin"
    bindir.mkdir()
    shim = bindir / "proxyctl"  # what `pip install` puts on PATH in the image
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m dashboard.cli "$@"\n')
    shim.chmod(0o755)
    dash = DashboardProcess(tmp_path, store={"kind": "file", "path": str(tmp_path / "store")})
    dash.start()
    try:
        run_env = {**env(), "PATH": f"{bindir}:{os.environ['PATH']}",
                   "SLOTPROXY_DASHBOARD": dash.url, "SLOTPROXY_ADMIN_TOKEN": TOKEN}
        for attempt in range(2):
            done = subprocess.run(["sh", str(REPO / "etc/compose/init.sh")], cwd=REPO,
                                  env=run_env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            if attempt == 1:
                assert "groups already exist" in done.stdout
        topo = dash.get("/api/v1/topology")
        assert [(g["id"], g["master"], g["replicas"]) for g in topo["groups"]] == [
            (i, f"redis{i}a:6379", [f"redis{i}b:6379"]) for i in (1, 2, 3)]
        assert topo["ranges"] == [[0, 5460, 1], [5461, 10922, 2], [10923, 16383, 3]]
    finally:
        dash.stop()
