"""Benchmarks for ccwatch (not tests): ``python -m bench [--quick | --smoke] [--write] [NAME...]``.

::

    __main__.py    command line: runs the benchmarks, prints their tables, updates docs/benchmarks.md
    common.py      workspaces, configs, the served emulator, child processes (CPU: wait4; peak RSS: VmHWM)
    report.py      machine facts, text/markdown tables, docs/benchmarks.md sections
    tree.py        large trees of files already "done" in the ledger (restart, idle)
    sdk_client.py  script run with PYTHONPATH=.sdk: the official SDK, as a loop or a naive watcher
    floor_client.py  script: the work each file needs, with ccwatch's parts, one file after another
    throughput.py  N images at once, 0.5 s per job: ccwatch vs the SDK loop vs a naive watcher
    overhead.py    CPU seconds per file with zero latency, beside the floor
    memory.py      peak RSS converting a 2 GB file, ccwatch vs the SDK
    latency.py     file close → job creation, events and poll mode
    restart.py     start-up over 100,000 files already done: time to idle, API calls, ledger size
    idle.py        CPU while watching a 10,000-file tree with nothing to do

Speed is measured here and reported in docs/benchmarks.md; it is never asserted in tests.
"""
