"""Every state name the stored documents use, defined once.

Slot migration follows Codis' action state machine (see `model/migration.py`); what a proxy
is told about a slot in each state is `TRANSIT_OF`, in terms of the contract's transit states.
"""

from __future__ import annotations

import itertools

from slotcore.slotmap import LOCKED, MIGRATING

# A group is "active", or "promoting" while `group promote` switches its master: its slots are
# then LOCKED in place on every proxy (`Topology.slot_map`, docs/replication.md).
GROUP_STATES = ("active", "promoting")

# Per-slot migration states, in the order a slot walks them.
MIGRATION_STATES = ("pending", "preparing", "prepared", "migrating", "finished")
# The one legal step forward from each state.
FORWARD = dict(itertools.pairwise(MIGRATION_STATES))
# A batch in progress: slots past pending (resumed after a restart).
ACTIVE = ("preparing", "prepared", "migrating", "finished")
# Slots that have not started to move data: a cancel sends them back to their source.
CANCELLABLE = ("pending", "preparing", "prepared")

# What proxies are told for a slot in each state: None = normal routing to `owner`.
# preparing/prepared: LOCKED under the target; migrating: MIGRATING (pull from the source).
# finished: `owner` is already the target, normal routing.
TRANSIT_OF = {"pending": None, "preparing": LOCKED, "prepared": LOCKED,
              "migrating": MIGRATING, "finished": None}

# online: acknowledged the current epoch; pending: registered, first push not done yet;
# unreachable: the last push to it failed (it blocks slot-map changes until it is removed).
PROXY_STATES = ("pending", "online", "unreachable")
