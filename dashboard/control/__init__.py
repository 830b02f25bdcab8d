"""The control plane (`plane`: leadership, topology cache, commit -> push -> rollback) and the
proxies it pushes to (`proxies`: registry and admin-API client)."""
