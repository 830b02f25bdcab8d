"""slotproxy's dashboard: the control plane.

models (data + JSON) → topology (pure rules) → service (leadership, commit, push, rollback)
→ api (REST, OpenAPI) ; store / store_file / store_etcd (one contract, two backends);
proxies (push client); health (redis INFO polling); cli (proxyctl) and localcluster
(`proxyctl up`); procs (real processes for `up` and the tests).
"""
