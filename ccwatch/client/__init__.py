"""The CloudConvert client, an edge: ``api`` (the API and storage calls, errors classified),
``wire`` (HTTP/1.1 connections, routes, proxies), ``framing`` (reading an answer off a socket),
``deadline`` (a total deadline per exchange, at the socket) and ``syncwait`` (waits on jobs
through the sync host, on one event loop)."""
