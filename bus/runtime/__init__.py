"""The daemon: ingress (accept → route → publish), delivery workers, HTTP server, admin API."""
