"""The crank that moves files through the stages: dispatch to bounded worker pools (``dispatch``),
what is due on each turn (``due``, pure), what a stage's error means for its file (``outcomes``),
when submissions may start (``gate``), retry and poll schedules (``backoff``), and the thread that wakes
the dispatcher when a poll is due (``waker``)."""

from ccwatch.pipeline.dispatch import Pipeline

__all__ = ["Pipeline"]
