"""A local CloudConvert API v2 for tests, demos and offline use (``ccwatch emulator``).

::

    core.py        Emulator: jobs and tasks, their status flow, upload forms, download URLs
    app.py         the API host's WSGI app (built by server.py): request log, faults, auth,
                   rate limits per route group; control
    routes.py      the API's endpoints (jobs, tasks, users, webhooks, formats, sync host)
    storage.py     the storage host's WSGI app (its own port, like storage.cloudconvert.com):
                   S3-like answers; the response faults both hosts share
    forms.py       the signed S3 POST-policy upload form and expiring download URLs
    files.py       upload form (multipart streamed to disk) and streamed downloads
    manage.py      deletes, cancel, retry, uploads arriving, sync waits
    validation.py  422 INVALID_DATA / INVALID_CONVERSION_TYPE like the API
    work.py        what each operation does to files
    engines.py     Pillow, thumbnail, archive, same-format copy; external.py: PATH tools
    runner.py      worker pool + one timer thread for per-job latency
    faults.py      scripted faults and the request log
    webhooks.py    signed deliveries with retries
    store.py       in-memory state (and the rate-limit windows) and the API's JSON shapes
    server.py      wsgi_app() / storage_wsgi_app() build the apps; serve() / run_forever()
"""

from ccwatch.emulator.core import Emulator
from ccwatch.emulator.faults import Fault, Faults, LoggedRequest
from ccwatch.emulator.server import run_forever, serve, storage_wsgi_app, wsgi_app
from ccwatch.emulator.store import Upload
from ccwatch.emulator.webhooks import Delivery, sign

__all__ = ["Delivery", "Emulator", "Fault", "Faults", "LoggedRequest", "Upload", "run_forever",
           "serve", "sign", "storage_wsgi_app", "wsgi_app"]
