"""What the dashboard watches and shows: redis server health, per-slot load, the status
document (`overview`) and the web page's live feed. Reads only; changes go through control/."""
