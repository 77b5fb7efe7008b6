"""The engine's moving parts, one job per module.

coordinator (the tick loop that owns every running task), task_run (one task's in-memory view and
the decisions about it), executor (runs handlers on threads or an event loop), finalizer (the
execution context and what to do next), backoff (retry delays), leases (worker identity and
liveness).
"""
