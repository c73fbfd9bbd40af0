"""Load scenarios for signer (storm, stampede, batch, verify, mixed), run headless with
locust: ``python -m loadtest SCENARIO --local`` or ``--target URL``; see README.md here.

Only ``loadtest.scenarios`` and ``loadtest.runner`` import locust (and with it gevent's
monkey-patching); ``loadtest.checks`` and ``loadtest.options`` are plain Python."""
