"""Configuration: interpolation, units, and every problem listed with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from esb.bus.config.loader import load_config
from esb.bus.config.units import parse_duration, parse_rate, parse_size
from esb.bus.errors import ConfigError

SAMPLE = Path(__file__).parents[3] / "config" / "esb.yaml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "esb.yaml"
    p.write_text(text)
    return p


def test_shipped_config_loads_with_the_embedded_default() -> None:
    loaded = load_config(SAMPLE, env={})
    assert loaded.config.bus.embedded
    assert loaded.config.http.listen == "127.0.0.1:8080"
    assert set(loaded.config.sources) == {"shop"}


def test_interpolation_with_defaults_and_types(tmp_path: Path) -> None:
    p = write(tmp_path, 'bus: {url: "${BUS:-embedded}", prefetch: "${PF:-300}"}\n'
                        'http: {listen: "127.0.0.1:${PORT}"}\n'
                        'admin: {token: "${TOKEN}"}\n')
    loaded = load_config(p, env={"PORT": "9000", "TOKEN": "s3cret-token"})
    c = loaded.config
    assert c.bus.url == "embedded" and c.bus.prefetch == 300
    assert c.http.port == 9000
    assert c.admin.token == "s3cret-token"
    assert ("admin", "token") in loaded.document.secret_paths


def test_unset_variable_without_default_is_an_error_naming_it(tmp_path: Path) -> None:
    p = write(tmp_path, "admin:\n  token: ${ESB_TEST_NOT_SET}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert "esb.yaml:2: admin.token: environment variable ESB_TEST_NOT_SET is not set" in str(
        e.value)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    p = write(tmp_path, "bus:\n  url: redis://x\n  prefetch: 0\nhttp: {listen: nope}\n"
                        "destinations:\n  d: {adapter: rest, url: 'ftp://x',\n"
                        "      delivery: {timeout: soon}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    problems = e.value.problems
    assert any(x.startswith(f"{p}:2: bus.url") for x in problems)
    assert any(x.startswith(f"{p}:3: bus.prefetch") for x in problems)
    assert any(x.startswith(f"{p}:4: http.listen") for x in problems)
    assert any(x.startswith(f"{p}:7: destinations.d.delivery.timeout") for x in problems)
    assert any(x.startswith(f"{p}:6: destinations.d.url") for x in problems)
    assert len(problems) == 5


def test_secrets_are_not_echoed_in_errors(tmp_path: Path) -> None:
    p = write(tmp_path, "bus: {url: '${BUS}'}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={"BUS": "redis://user:hunter2@x"})
    assert "hunter2" not in str(e.value)


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    p = write(tmp_path, "bus:\n  url: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert str(e.value).startswith(f"{p}:")


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "http: {listen: '127.0.0.1:1'}\nhttp: {listen: '127.0.0.1:2'}\n")
    with pytest.raises(ConfigError, match=r"esb.yaml:2: duplicate key 'http'"):
        load_config(p, env={})


def test_units() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120
    assert parse_duration(3) == 3
    assert parse_rate("100/s") == 100
    assert parse_rate("60/m") == 1
    assert parse_size("1MiB") == 1048576
    for bad in ("soon", -1, True):
        with pytest.raises(ValueError):
            parse_duration(bad)
