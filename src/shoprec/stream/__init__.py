"""Real time (DESIGN §6): the event bus, the live per-user state, and the worker that applies
events to it exactly once.

Both the bus and the live state open by URL behind one small Protocol each: ``memory://`` (the
embedded default) and ``redis://host:port/db`` (production: several API replicas and workers
share one Redis).
"""
