#!/bin/sh
# One-shot: create the three groups (master + replica) and spread the slots evenly, through the
# dashboard's REST API. Safe to run again: it does nothing once groups exist.
# The replicas replicate through their own `--replicaof` (docker-compose.yml), so they are only
# recorded here (--no-replicate); `proxyctl group promote` re-points them like any other.
set -eu
export SLOTPROXY_DASHBOARD="${SLOTPROXY_DASHBOARD:-http://dashboard:18080}"
# Wait until the dashboard answers AND holds the leader lock (etcd may still be starting).
for _ in $(seq 1 120); do
  proxyctl --json status 2>/dev/null | grep -q '"role": "leader"' && break
  sleep 1
done
if proxyctl group list | grep -q '^1 '; then
  echo "groups already exist:"; proxyctl status; exit 0
fi
proxyctl group add 1 --master redis1a:6379 --replica redis1b:6379 --no-replicate
proxyctl group add 2 --master redis2a:6379 --replica redis2b:6379 --no-replicate
proxyctl group add 3 --master redis3a:6379 --replica redis3b:6379 --no-replicate
proxyctl slots assign 0-5460 1
proxyctl slots assign 5461-10922 2
proxyctl slots assign 10923-16383 3
proxyctl status
