"""The end-to-end benchmark harness behind ``python bench/run.py``.

Each part runs in its own process so that no two compete for one event loop: the HTTP sink
(:mod:`harness.sink`), the load generator (:mod:`harness.loadgen`), the esb daemon
(:mod:`harness.daemon`) or the raw ceiling relay (``bench/ceiling.py``).
"""
