"""Where everything lives in the store: one cluster per prefix, so several can share one etcd."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "/slotproxy"


@dataclass(frozen=True, slots=True)
class Keys:
    """Where everything lives; one cluster per prefix, so several can share one etcd."""

    cluster: str = "default"
    prefix: str = DEFAULT_PREFIX

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.cluster}"

    @property
    def topology(self) -> str:
        return f"{self.root}/topology"

    @property
    def proxies(self) -> str:
        return f"{self.root}/proxies/"

    def proxy(self, proxy_id: str) -> str:
        return f"{self.proxies}{proxy_id}"

    @property
    def leader(self) -> str:
        return f"{self.root}/leader"

    @property
    def migration_settings(self) -> str:
        return f"{self.root}/migration-settings"
