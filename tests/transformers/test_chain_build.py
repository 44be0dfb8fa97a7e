"""build_chain and Chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from esb.bus.envelope import Envelope
from esb.bus.errors import (
    ConfigError,
    DropEnvelope,
    PermanentError,
    TransformError,
    TransientError,
    TransientTransformError,
)
from esb.bus.plugins import TRANSFORMERS_GROUP, Registry
from esb.transformers.chain import Chain, build_chain
from esb.transformers.spec import TransformerContext, TransformerSettings, TransformerSpec

DATA = Path(__file__).parent / "data"


class BoomSettings(TransformerSettings):
    kind: str = "value"


def boom_factory(settings: BoomSettings, ctx: TransformerContext):
    def boom(env: Envelope) -> Envelope:
        if settings.kind == "drop":
            raise DropEnvelope("filtered")
        if settings.kind == "transform":
            raise TransformError("inner", "said no")
        if settings.kind == "permanent":
            raise PermanentError("rejected")
        if settings.kind == "transient":
            raise TransientError("lookup down", retry_after=7.0)
        if settings.kind == "transient-named":
            raise TransientTransformError("inner", "not yet")
        if settings.kind == "not-an-envelope":
            return "oops"  # type: ignore[return-value]
        raise ValueError("kaboom")

    return boom


def registry() -> Registry:
    spec = TransformerSpec("boom", "fails on purpose", BoomSettings, boom_factory, "kind")
    return Registry(TRANSFORMERS_GROUP, "transformer", extra={"boom": spec})


def env() -> Envelope:
    return Envelope(source="t", type="t", data={"a": 1})


def test_empty_chain_is_identity() -> None:
    e = env()
    chain = build_chain([], base_dir=DATA)
    assert chain(e) is e and chain.steps == [] and len(chain) == 0
    assert Chain()(e) is e


def test_unexpected_exception_is_wrapped_with_the_step_name() -> None:
    chain = build_chain([{"jmespath": "@"}, "boom"], base_dir=DATA,
                        registry=registry())
    with pytest.raises(TransformError) as info:
        chain(env())
    assert info.value.step == "boom"
    assert str(info.value) == "transformer 'boom': ValueError: kaboom"


@pytest.mark.parametrize(("kind", "error"), [
    ("drop", DropEnvelope), ("transform", TransformError),
    ("transient-named", TransientTransformError)])
def test_deliberate_errors_pass_through_unchanged(kind: str, error: type) -> None:
    chain = build_chain([{"boom": kind}], base_dir=DATA, registry=registry())
    with pytest.raises(error) as info:
        chain(env())
    assert info.type is error
    if kind != "drop":
        assert info.value.step == "inner"


def test_permanent_error_becomes_a_transform_error_naming_the_step() -> None:
    chain = build_chain([{"jmespath": "@"}, {"boom": "permanent"}], base_dir=DATA,
                        registry=registry())
    with pytest.raises(TransformError) as info:
        chain(env())
    assert isinstance(info.value, PermanentError)  # dead-lettered, never retried
    assert info.value.step == "boom"
    assert str(info.value) == "transformer 'boom': PermanentError: rejected"
    assert isinstance(info.value.__cause__, PermanentError)


def test_transient_error_names_the_step_and_keeps_its_hint() -> None:
    chain = build_chain([{"boom": "transient"}], base_dir=DATA, registry=registry())
    with pytest.raises(TransientTransformError) as info:
        chain(env())
    assert isinstance(info.value, TransientError)  # retried, never dead-lettered at once
    assert not isinstance(info.value, PermanentError)
    assert info.value.step == "boom"
    assert str(info.value) == "transformer 'boom': lookup down"
    assert info.value.retry_after == 7.0


def test_step_must_return_an_envelope() -> None:
    chain = build_chain([{"boom": "not-an-envelope"}], base_dir=DATA, registry=registry())
    with pytest.raises(TransformError, match="returned str, not an Envelope"):
        chain(env())


def test_every_problem_is_listed(tmp_path: Path) -> None:
    (tmp_path / "broken.xsl").write_text(
        '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'
        '<xsl:template match="/"><xsl:value-of select="1 +"/></xsl:template>'
        "</xsl:stylesheet>")
    steps = [
        "xslx",
        {"xslt": "broken.xsl"},
        {"jmespath": {"expresion": "a"}},
        {"xml-to-json": "shorthand?"},
        {"a": 1, "b": 2},
        {"xslt": "missing.xsl"},
        "xml-to-json",
    ]
    with pytest.raises(ConfigError) as info:
        build_chain(steps, base_dir=tmp_path, where="routes/orders.yaml:transform")
    problems = info.value.problems
    w = "routes/orders.yaml:transform"
    assert problems[0].startswith(f"{w}[0].xslx: unknown transformer 'xslx'. "
                                  "Did you mean 'xslt'?")
    assert problems[1].startswith(f"{w}[1].xslt: broken.xsl does not compile: ")
    assert "could not compile select expression '1 +'" in problems[1]
    assert f"{w}[2].jmespath: option 'expression': Field required" in problems
    assert f"{w}[2].jmespath: option 'expresion': Extra inputs are not permitted" in problems
    assert any(p.startswith(f"{w}[3].xml-to-json: takes no shorthand") for p in problems)
    assert any(p.startswith(f"{w}[4]: a step is a transformer name or a one-key") for p in problems)
    assert any(p.startswith(f"{w}[5].xslt: stylesheet ") and "not found" in p for p in problems)
    assert len(problems) == 7


def test_named_definitions_single_list_and_cycles() -> None:
    named = {"first": {"jmespath": "a"}, "both": ["first", {"jmespath": "@"}],
             "loop": ["loop2"], "loop2": "loop"}
    chain = build_chain(["both", "first"], base_dir=DATA, named=named)
    assert chain.steps == ["both/first", "both/jmespath", "first"]
    assert chain(Envelope(source="t", type="t", data={"a": {"a": 3}})).data == 3
    with pytest.raises(ConfigError, match=r"transform\[0\]\.loop\[0\]\.loop2: definition 'loop'"):
        build_chain(["loop"], base_dir=DATA, named=named)


def test_steps_must_be_a_list() -> None:
    with pytest.raises(ConfigError, match="expected a list of steps"):
        build_chain("xslt", base_dir=DATA)  # type: ignore[arg-type]


UDF = '''
def shout(env):
    return {"said": env.data["a"] * 2}
'''


@pytest.fixture
def udf_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "esb_chain_udf.py").write_text(UDF)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "esb_chain_udf"


def test_bare_module_function_string_is_a_python_step(udf_module: str) -> None:
    chain = build_chain([f"{udf_module}:shout", {"jmespath": "said"}], base_dir=DATA)
    assert chain.steps == [f"{udf_module}:shout", "jmespath"]
    assert chain(env()).data == 2


def test_bare_module_function_problems_are_python_problems() -> None:
    with pytest.raises(ConfigError) as info:
        build_chain(["esb_no_such_module:f"], base_dir=DATA)
    (problem,) = info.value.problems
    assert problem.startswith("transform[0].python: function 'esb_no_such_module:f': "
                              "cannot import 'esb_no_such_module'"), problem
    assert "unknown transformer" not in problem


def test_definitions_and_entry_points_with_a_colon_win_over_functions(udf_module: str) -> None:
    spec = TransformerSpec("mark:done", "marks", BoomSettings,
                           lambda settings, ctx: lambda e: e.model_copy(update={"subject": "m"}))
    reg = Registry(TRANSFORMERS_GROUP, "transformer", extra={"mark:done": spec})
    named = {"ns:double": f"{udf_module}:shout"}
    chain = build_chain(["ns:double", "mark:done"], base_dir=DATA, named=named, registry=reg)
    assert chain.steps == ["ns:double", "mark:done"]
    out = chain(env())
    assert (out.data, out.subject) == ({"said": 2}, "m")
