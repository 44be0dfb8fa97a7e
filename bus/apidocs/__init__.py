"""OpenAPI 3.1 documents of the daemon: its inbound sources and its admin API."""
