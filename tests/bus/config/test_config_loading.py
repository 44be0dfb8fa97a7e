"""Configuration: interpolation, units, and every problem listed with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr

from esb.bus.config.loader import load_config
from esb.bus.config.secrets import find_secrets
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
    assert c.admin.token == "s3cret-token" and "s3cret-token" not in repr(c)
    assert ("admin", "token") in loaded.document.secret_paths


def test_values_that_look_like_numbers_take_the_type_of_their_setting(tmp_path: Path) -> None:
    """A digits-only token stays text; the same kind of value is a number where the setting is
    one (prefetch, a duration, a rate) and a flag where it is a flag."""
    p = write(tmp_path, 'bus: {prefetch: "${PF}", heartbeat: "${HB}"}\n'
                        'admin: {token: "${TOKEN}"}\n'
                        'destinations:\n'
                        '  d: {adapter: rest, url: "http://127.0.0.1:9/x",\n'
                        '      delivery: {rate_limit: "${RATE}", timeout: "${TO}"}}\n')
    loaded = load_config(p, env={"PF": "300", "HB": "0", "TOKEN": "123456", "RATE": "25",
                                 "TO": "2.5"})
    c = loaded.config
    assert c.admin.token == "123456"
    assert (c.bus.prefetch, c.bus.heartbeat) == (300, 0)
    delivery = c.destinations["d"].delivery
    assert (delivery.rate_limit, delivery.timeout) == (25.0, 2.5)


def test_unset_variable_without_default_is_an_error_naming_it(tmp_path: Path) -> None:
    p = write(tmp_path, "admin:\n  token: ${ESB_TEST_NOT_SET}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert "esb.yaml:2: admin.token: environment variable ESB_TEST_NOT_SET is not set" in str(
        e.value)


def test_unset_variable_is_listed_with_the_validation_problems(tmp_path: Path) -> None:
    """One run shows everything: the unset variable does not stop validation, and nothing is
    said about the empty value standing in for it."""
    p = write(tmp_path, "http: {listen: '${ESB_TEST_NOT_SET}'}\n"
                        "bus: {url: 'kafka://nope'}\n"
                        "destinations:\n"
                        "  d: {adapter: '${ESB_TEST_ADAPTER_NOT_SET}', url: 'http://x'}\n"
                        "colour: blue\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    problems = e.value.problems
    assert problems[:2] == [
        f"{p}:1: http.listen: environment variable ESB_TEST_NOT_SET is not set "
        "(use ${ESB_TEST_NOT_SET:-default})",
        f"{p}:4: destinations.d.adapter: environment variable ESB_TEST_ADAPTER_NOT_SET is not "
        "set (use ${ESB_TEST_ADAPTER_NOT_SET:-default})"]
    assert any(x.startswith(f"{p}:2: bus.url: ") for x in problems)
    assert f"{p}:5: colour: unknown key" in problems
    assert len(problems) == 4, problems


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


LITERAL_SECRETS = """\
admin: {token: "literal-admin-token-1"}
bus: {url: redis://x}
sources:
  hook:
    adapter: webhook
    path: /in/hook
    scheme: github
    secrets: ["literal-gh-secret-123", "${HOOK_SECRET_NEW}"]
  shop:
    adapter: rest
    path: /in/shop
    auth: {type: basic, users: {erp: "literal-pw-456", crm: "${CRM_PW:-default-pw-789}"}}
destinations:
  out:
    adapter: rest
    url: http://127.0.0.1:9/out
    auth: {type: bearer, token: literal-token-789}
"""


def test_literal_secrets_are_refused_with_the_other_problems(tmp_path: Path) -> None:
    p = write(tmp_path, LITERAL_SECRETS)
    with pytest.raises(ConfigError) as e:
        load_config(p, env={"HOOK_SECRET_NEW": "env-hook-secret-1"})
    rule = "secrets come from ${VAR} references, not literal values"
    problems = e.value.problems
    assert sorted(x for x in problems if x.endswith(rule)) == sorted([
        f"{p}:1: admin.token: {rule}",
        f"{p}:8: sources.hook.secrets.0: {rule}",
        f"{p}:12: sources.shop.auth.users.erp: {rule}",
        f"{p}:17: destinations.out.auth.token: {rule}",
    ])
    assert next(x for x in problems if not x.endswith(rule)).startswith(f"{p}:2: bus.url: ")
    assert len(problems) == 5
    for literal in ("literal-admin-token-1", "literal-gh-secret-123", "literal-pw-456",
                    "literal-token-789"):
        assert literal not in str(e.value)


def test_references_with_defaults_and_empty_or_absent_secrets_load(tmp_path: Path) -> None:
    p = write(tmp_path, 'admin: {token: ""}\n'
                        "sources:\n"
                        "  shop:\n"
                        "    adapter: rest\n"
                        "    path: /in/shop\n"
                        "    auth: {type: api_key,\n"
                        '           keys: {a: "${KEY_A}", b: "${KEY_B:-dflt-b-1}"}}\n'
                        "destinations:\n"
                        "  out:\n"
                        "    adapter: rest\n"
                        "    url: http://127.0.0.1:9/out\n"
                        '    auth: {type: basic, username: esb, password: "pw-${PW_TAIL}"}\n')
    loaded = load_config(p, env={"KEY_A": "env-key-a-1", "PW_TAIL": "tail-22"})
    assert loaded.config.admin.token == ""  # the daemon generates one, as before
    keys = loaded.source_settings["shop"].auth.named_keys()  # type: ignore[attr-defined]
    assert keys == [("a", "env-key-a-1"), ("b", "dflt-b-1")]
    password = loaded.destination_settings["out"].auth.password  # type: ignore[attr-defined]
    assert password.get_secret_value() == "pw-tail-22"


def test_log_secrets_come_from_the_validated_secret_fields(tmp_path: Path) -> None:
    p = write(tmp_path, 'admin: {token: "${ADMIN}"}\n'
                        "sources:\n"
                        "  hook: {adapter: webhook, path: /in/hook, scheme: github,\n"
                        '         secrets: ["${HOOK:-hook-default-secret}"]}\n'
                        "  legacy: {adapter: amqp, url: '${LEGACY_URL}', queue: q}\n"
                        "destinations:\n"
                        "  out:\n"
                        "    adapter: rest\n"
                        "    url: http://127.0.0.1:9/out\n"
                        '    headers: {X-Partner-Token: "Bearer ${HDR}", X-Trace: "${TRACE}"}\n'
                        '    auth: {type: oauth2, token_url: "http://127.0.0.1:9/token",\n'
                        '           client_id: esb, client_secret: "${CLIENT_SECRET}"}\n')
    loaded = load_config(p, env={"ADMIN": "admin-token-1", "CLIENT_SECRET": "client-secret-2",
                                 "LEGACY_URL": "amqp://erp:amqp-pw-3@mq:5672/erp",
                                 "HDR": "header-token-4", "TRACE": "not-a-secret-5"})
    secrets = loaded.log_secrets()
    for value in ("admin-token-1", "client-secret-2", "hook-default-secret",
                  "amqp://erp:amqp-pw-3@mq:5672/erp", "amqp-pw-3",
                  "Bearer header-token-4", "header-token-4"):
        assert value in secrets
    assert "not-a-secret-5" not in secrets
    assert secrets == sorted(secrets, key=len, reverse=True)


def test_a_plugin_model_secret_is_found_at_its_config_key() -> None:
    class Inner(BaseModel):
        pin: SecretStr

    class PluginSettings(BaseModel):
        plain: str = "x"
        key: SecretStr = Field(alias="api-key")
        nested: dict[str, list[Inner]] = Field(default_factory=dict)

    model = PluginSettings.model_validate({"api-key": "k-1", "nested": {"a": [{"pin": "p-2"}]}})
    found = {loc: s.get_secret_value() for loc, s in find_secrets(model, ("sources", "x"))}
    assert found == {("sources", "x", "api-key"): "k-1",
                     ("sources", "x", "nested", "a", 0, "pin"): "p-2"}
