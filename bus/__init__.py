"""esb core: the canonical envelope, the bus seam and its brokers, routing, the daemon and CLI.

Kept import-light: nothing here opens connections or loads plugins at import time.
"""
