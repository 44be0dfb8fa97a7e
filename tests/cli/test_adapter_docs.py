"""docs/adapters.md: its settings tables — one per built-in direction and one per nested settings
model — are generated from the adapters' settings models and must match them, no hand-written
settings table sits beside them, and the sections the guide promises are there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field, SecretStr

from esb.adapters.spec import AdapterSettings, AdapterSpec
from esb.bus.cli.adapterdocs import (
    MODEL_REGION,
    REGION,
    builtin_pairs,
    builtin_specs,
    model_region,
    nested_models,
    settings_table,
    update,
)
from esb.bus.config.units import Duration

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"


def test_the_settings_tables_match_the_models() -> None:
    specs = builtin_specs()
    text = DOC.read_text()
    fresh = update(text, specs, builtin_pairs(specs), nested_models(specs))
    assert fresh == text, ("docs/adapters.md is out of date with the settings models: run "
                           "`python -m esb.bus.cli.adapterdocs docs/adapters.md`")


def test_every_builtin_direction_has_exactly_one_table() -> None:
    specs = builtin_specs()
    assert {"rest", "file", "soap", "graphql", "webhook"} <= set(specs)
    regions = [(m.group("name"), m.group("direction")) for m in REGION.finditer(DOC.read_text())]
    assert sorted(regions) == sorted(builtin_pairs(specs))


def test_every_nested_settings_model_has_exactly_one_table() -> None:
    models = nested_models(builtin_specs())
    assert {"PollSettings", "PollCursor", "WsseSettings", "ApiKeyInbound", "BasicInbound",
            "JwtInbound", "ApiKeyOutbound", "BasicOutbound", "BearerOutbound",
            "OAuth2Outbound"} <= set(models)
    regions = [m.group("model") for m in MODEL_REGION.finditer(DOC.read_text())]
    assert sorted(regions) == sorted(models)


def test_no_settings_table_is_written_by_hand() -> None:
    text = DOC.read_text()
    generated = [m.span() for pattern in (REGION, MODEL_REGION) for m in pattern.finditer(text)]
    headers = [m.start() for m in re.finditer(r"^\| setting \|", text, re.MULTILINE)]
    assert headers
    stray = [text.count("\n", 0, at) + 1 for at in headers
             if not any(start < at < end for start, end in generated)]
    assert stray == [], f"hand-written settings tables at docs/adapters.md lines {stray}"


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


class Deep(BaseModel):
    """The innermost.

    Only the first paragraph is the caption."""

    depth: int = 3


class Inner(BaseModel):
    """Holds a deeper one."""

    deep: Deep | None = None


class VariantA(BaseModel):
    type: Literal["a"]


class VariantB(BaseModel):
    type: Literal["b"]
    #: How long to wait.
    wait: Duration = 1.0


class Outer(AdapterSettings):
    inners: list[Inner] = Field(default_factory=list)
    by_name: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    variant: Annotated[VariantA | VariantB, Field(discriminator="type")] | None = None


def outer_spec() -> AdapterSpec:
    return AdapterSpec(name="outer", summary="o", inbound_settings=Outer,
                       inbound=lambda s, c: None)  # type: ignore[arg-type,return-value]


def test_nested_models_are_found_through_containers_and_unions() -> None:
    found = nested_models({"outer": outer_spec()})
    assert found == {"Inner": Inner, "VariantA": VariantA, "VariantB": VariantB, "Deep": Deep}


def test_two_nested_models_with_one_name_are_refused() -> None:
    clash = type("Inner", (BaseModel,), {"__annotations__": {"x": int}, "__module__": "other"})

    class Clashing(AdapterSettings):
        a: Inner | None = None
        b: clash | None = None  # type: ignore[valid-type]

    spec = AdapterSpec(name="c", summary="c", inbound_settings=Clashing,
                       inbound=lambda s, c: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="two settings models are named 'Inner'"):
        nested_models({"c": spec})


def test_a_nested_table_has_a_caption_and_readable_types() -> None:
    lines = model_region("VariantB", VariantB).splitlines()
    assert lines[0] == "<!-- generated:model VariantB -->"
    assert lines[1] == "`VariantB`"  # no docstring: the name alone
    assert '| `wait` | duration | `1.0` | How long to wait. |' in lines
    assert model_region("Deep", Deep).splitlines()[1] == "`Deep` — The innermost."
    outer = settings_table(Outer)
    assert "| `inners` | list of mapping (Inner) |" in outer
    assert "| `by_name` | mapping of (string or mapping of string) |" in outer
    assert "| `variant` | mapping (VariantA) or mapping (VariantB) or null |" in outer


def test_update_refreshes_and_adds_nested_model_tables() -> None:
    specs = {"outer": outer_spec()}
    text = ("## outer\n\n<!-- generated:model Inner -->\nstale\n<!-- /generated -->\n\n"
            "<!-- generated:model Gone -->\nkept as is\n<!-- /generated -->\n")
    out = update(text, specs, [("outer", "inbound")], nested_models(specs))
    assert "stale" not in out and "`Inner` — Holds a deeper one." in out
    assert "kept as is" in out  # a model not installed here is left alone
    reference = out.split("## Settings reference")[1]
    for name in ("Deep", "VariantA", "VariantB"):
        assert f"### {name}\n\n<!-- generated:model {name} -->" in reference
    assert "<!-- generated:model Inner -->" not in reference
    assert update(out, specs, [("outer", "inbound")], nested_models(specs)) == out
