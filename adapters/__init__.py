"""Protocol adapters: how outside systems attach to the bus (see ``esb.adapters.spec``)."""
