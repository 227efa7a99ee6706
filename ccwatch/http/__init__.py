"""The operator's HTTP endpoint (``[http] listen``): status page at ``/``, ``/metrics``, ``/healthz``.

:mod:`.app` serves it and :mod:`.page` renders the page (what it shows is gathered by
:mod:`ccwatch.pipeline.report`); :mod:`.metrics` holds the Prometheus series the stages count into.
"""
