"""Mulligan's sandbox: where candidate patches run, and the repository snapshots, diffs and git
calls they need. It never imports `agent`."""
