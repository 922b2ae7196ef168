"""Offline evaluation: splitters, metrics, tuning and the report."""
