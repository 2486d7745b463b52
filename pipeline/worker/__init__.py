"""The worker: one pass, the schedule, liveness."""
