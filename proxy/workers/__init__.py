"""Worker processes: `workers: N` runs N proxy processes on one client port (SO_REUSEPORT)
under a supervisor that registers once with the dashboard and fans every slot map out to them
(docs/architecture.md, "Worker processes")."""
