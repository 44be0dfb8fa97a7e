"""Test support shared by the suite: a recording HTTP destination, a cuttable TCP proxy, a
daemon subprocess driver, and the broker fixture's helpers."""
