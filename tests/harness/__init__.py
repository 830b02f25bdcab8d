"""The one test harness: real processes (`procs`), one HTTP client (`http`), raw sockets
(`raw`), in-process dashboard servers (`inproc`) and a whole cluster with a load generator
(`cluster`). Tests import what they need from `tests.harness`."""

from .http import TOKEN, AsyncHttp, Http, Response, http
from .procs import (
    REPO,
    DashboardProcess,
    Process,
    ProxyProcess,
    RedisServer,
    SentinelServer,
    env,
    free_port,
    group_config,
    python_module,
    start_etcd,
    until,
    wait_port,
)
from .raw import RawClient

__all__ = ["REPO", "TOKEN", "AsyncHttp", "DashboardProcess", "Http", "Process", "ProxyProcess",
           "RawClient", "RedisServer", "Response", "SentinelServer", "env", "free_port",
           "group_config", "http", "python_module", "start_etcd", "until", "wait_port"]
