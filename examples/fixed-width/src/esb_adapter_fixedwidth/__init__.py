"""esb adapter for mainframe-style fixed-width record files, built only on esb's plugin API
(``esb.adapters.spec``, ``esb.bus.envelope``, ``esb.bus.errors``)."""
