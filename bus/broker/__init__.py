"""The bus seam (``esb.bus.broker.base.Bus``) and its two implementations."""
