"""The command line: ``cli`` (click) and one module per command that is more than a call into the
daemon: ``check``, ``init``, ``status``, ``retry``."""
