"""Every error the dashboard's API answers with, each with its HTTP status.

Two families, kept apart because code catches them differently:

* `RequestRefused` (400/404/409): the pure topology rules said no. Raised by `model/` and by
  request validation; the message names the offending group, server or slots.
* `DashboardError` (409/502/503/500): the control plane could not carry a change out (standby,
  store down, a concurrent writer, proxies that did not acknowledge). The leadership loop, the
  proxy sync and the live feed catch this family, never the first.

Both derive from `ApiError`, which is what the API's error middleware turns into
`{"error": message}` with `status`. Pure: no imports from the rest of the dashboard.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class ApiError(Exception):
    """An error with the HTTP status the API answers it with."""

    status = 500


# -- refused by the topology rules (model/) ------------------------------------------------------


class RequestRefused(ApiError):
    status = 400


class InvalidRequest(RequestRefused):
    status = 400


class NotFound(RequestRefused):
    status = 404


class Conflict(RequestRefused):
    status = 409


# -- the control plane could not do it (control/) ------------------------------------------------


class DashboardError(ApiError):
    status = 500


class StandbyError(DashboardError):
    """This dashboard does not hold the leader lock: mutations go to the leader."""

    status = 503


class StoreFailure(DashboardError):
    status = 503


class ConcurrentChange(DashboardError):
    status = 409


class _Outcome(Protocol):
    """What PushFailed reads of a push outcome (control.proxies.PushResult)."""

    @property
    def error(self) -> str | None: ...


class _Proxy(Protocol):
    """What PushFailed reads of a proxy record (model.records.ProxyRecord)."""

    @property
    def admin(self) -> str: ...


class PushFailed(DashboardError):
    """Some proxies did not acknowledge a change; it was rolled back."""

    status = 502

    def __init__(self, failed: Mapping[str, _Outcome], proxies: Mapping[str, _Proxy],
                 epoch: int, rollback_failed: Mapping[str, _Outcome],
                 rollback_error: str | None = None) -> None:
        self.failed = failed
        self.epoch = epoch
        names = "; ".join(f"proxy {pid} (admin {proxies[pid].admin}): {r.error}"
                          for pid, r in sorted(failed.items()))
        if rollback_error:
            tail = f"rolling back ALSO failed ({rollback_error}): check `proxyctl status`"
        else:
            tail = (f"the change was rolled back (epoch {epoch} carries the previous "
                    "topology); remove a dead proxy (make sure it is stopped) with "
                    "`proxyctl proxy remove ID --force`")
        lagging = sorted(set(rollback_failed) - set(failed))
        if lagging:
            tail += (f"; proxies {', '.join(lagging)} did not take the rollback yet and catch "
                     "up with their next heartbeat")
        super().__init__(f"{len(failed)} proxy(ies) did not acknowledge the change: "
                         f"{names}; {tail}")
        self.rollback_failed = rollback_failed
