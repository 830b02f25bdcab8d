"""slotproxy's dashboard: the control plane.

Layers, bottom to top (a module imports only from below it, and never from `proxy/`):
errors, model/ (pure records and rules) -> store/ (one contract, file and etcd backends)
-> control/ (the ControlPlane: leadership, commit -> push -> rollback; the proxy registry)
-> observe/ (health, load, overview, live feed) -> migrate/ (migrator, movers, rebalancer)
-> api/ (REST endpoints, middlewares, OpenAPI) -> app (create_app). cli/ (proxyctl,
`proxyctl up`, process helpers) talks to the API over HTTP only (model/'s pure helpers aside).
"""
