"""Helpers shared by the test suite (servers that stand in for external services)."""
