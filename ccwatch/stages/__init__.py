"""The stages a file goes through, one module each, in pipeline order: ``intake`` (events and
scans, with ``settle``), ``submit``, ``track``, ``deliver``, and ``quarantine`` for failures;
``context`` is what they share (config, ledger, API client, clock).
Only :mod:`ccwatch.pipeline` knows that order.
"""
