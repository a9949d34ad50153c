"""Mulligan's core: the solve-test-revise loop, its settings, events and errors; front ends in
agent/frontends, model backends in agent/models."""
