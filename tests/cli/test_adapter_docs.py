"""docs/adapters.md: its settings tables are generated from the adapters' settings models and
must match them; the sections the guide promises are there."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from esb.adapters.spec import AdapterSettings, AdapterSpec
from esb.bus.cli.adapterdocs import REGION, builtin_pairs, builtin_specs, settings_table, update

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"


def test_the_settings_tables_match_the_models() -> None:
    specs = builtin_specs()
    text = DOC.read_text()
    fresh = update(text, specs, builtin_pairs(specs))
    assert fresh == text, ("docs/adapters.md is out of date with the settings models: run "
                           "`python -m esb.bus.cli.adapterdocs docs/adapters.md`")


def test_every_builtin_direction_has_exactly_one_table() -> None:
    specs = builtin_specs()
    assert {"rest", "file", "soap", "graphql", "webhook"} <= set(specs)
    regions = [(m.group("name"), m.group("direction")) for m in REGION.finditer(DOC.read_text())]
    assert sorted(regions) == sorted(builtin_pairs(specs))


def test_the_guide_has_its_sections() -> None:
    text = DOC.read_text()
    for heading in ("## rest", "## file", "## soap", "## graphql", "## webhook",
                    "## Writing an adapter", "### Prove it with the test kit",
                    "esb adapters new", "examples/fixed-width"):
        assert heading in text


class Sample(AdapterSettings):
    #: Where it goes; ``{id}`` is filled in.
    url: str
    mode: Literal["fast", "safe"] = Field("safe", description="how | carefully")
    tags: list[str] = Field(default_factory=lambda: ["a"])
    token: SecretStr | None = None
    timeout: float = 2.5


def test_a_table_renders_types_defaults_and_meanings() -> None:
    assert settings_table(Sample).splitlines() == [
        "| setting | type | default | meaning |",
        "|---|---|---|---|",
        "| `url` | string | required | Where it goes; `{id}` is filled in. |",
        '| `mode` | one of "fast", "safe" | `"safe"` | how \\| carefully |',
        '| `tags` | list of string | `["a"]` |  |',
        "| `token` | secret string or null | — |  |",
        "| `timeout` | number | `2.5` |  |",
    ]


def test_update_refreshes_regions_and_adds_missing_ones() -> None:
    spec = AdapterSpec(name="sample", summary="s", outbound_settings=Sample,
                       outbound=lambda s, c: None)  # type: ignore[arg-type,return-value]
    text = ("# Adapters\n\n## sample\n\n<!-- generated:settings sample outbound -->\nstale\n"
            "<!-- /generated -->\n\n## Settings reference\n\nIntro.\n\n## After\n\nkept\n")
    out = update(text, {"sample": spec, "other": spec},
                 [("sample", "outbound"), ("other", "outbound")])
    assert "stale" not in out and "| `url` | string | required |" in out
    reference = out.split("## Settings reference")[1].split("## After")[0]
    assert "### other outbound" in reference
    assert "<!-- generated:settings other outbound -->" in reference
    assert out.endswith("## After\n\nkept\n")
    assert update(out, {"sample": spec, "other": spec},
                  [("sample", "outbound"), ("other", "outbound")]) == out
