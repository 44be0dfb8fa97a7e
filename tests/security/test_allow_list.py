"""``http.allowed_hosts`` entries may name a port and a scheme; a bad entry is a configuration
error, never a crash at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from esb.bus.config.model import HttpConfig
from esb.bus.hosts import host_allowed

CASES = [
    ("127.0.0.1:19201", "http://127.0.0.1:19201/x", True),
    ("127.0.0.1:19201", "http://127.0.0.1:19202/x", False),
    ("api.example.com", "https://api.example.com:8443/x", True),
    ("api.example.com:443", "https://api.example.com/x", True),
    ("api.example.com:443", "http://api.example.com/x", False),
    ("https://api.example.com", "https://api.example.com/v1", True),
    ("https://api.example.com", "http://api.example.com/v1", False),
    ("http://127.0.0.1:19201", "http://127.0.0.1:19201/in", True),
    ("http://127.0.0.1:19201", "https://127.0.0.1:19201/in", False),
    ("*.example.com", "https://a.b.example.com/", True),
    ("*.example.com", "https://example.com/", False),
    ("*.example.com:8080", "http://a.example.com:8080/", True),
    ("[::1]:8080", "http://[::1]:8080/", True),
    ("[::1]:8080", "http://[::1]:8081/", False),
    ("api.example.com", "https://api.example.com.evil.org/", False),
]


@pytest.mark.parametrize(("entry", "url", "allowed"), CASES)
def test_entries_with_ports_and_schemes(entry: str, url: str, allowed: bool) -> None:
    assert host_allowed(url, (entry,)) is allowed
    assert HttpConfig(allowed_hosts=[entry]).allowed_hosts == [entry]


@pytest.mark.parametrize("entry", ["", "host:99999", "host:x", "https://h/path", "a*.b.com",
                                   "https://user@h"])
def test_bad_entries_are_config_errors(entry: str) -> None:
    with pytest.raises(ValidationError, match="allowed_hosts"):
        HttpConfig(allowed_hosts=[entry])
