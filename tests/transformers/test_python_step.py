"""The ``python`` transformer."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from esb.bus.envelope import Envelope
from esb.bus.errors import ConfigError, DropEnvelope, TransformError, TransientError
from esb.bus.plugins import TRANSFORMERS_GROUP, Registry
from esb.transformers.chain import build_chain

UDFS = '''
from esb.bus.envelope import Envelope
from esb.bus.errors import DropEnvelope, TransientError

def retag(env):
    return env.model_copy(update={"subject": "retagged"})

def as_dict(env):
    return {"wrapped": env.data}

def as_text(env):
    return "plain"

def forget(env):
    env.data = 1

def drop(env):
    raise DropEnvelope("not for us")

def later(env):
    raise TransientError("lookup service down")

def broken(env):
    return env.data["missing"]

class Holder:
    @staticmethod
    def nested(env):
        return [1, 2]
'''


@pytest.fixture
def udfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "esb_test_udfs.py").write_text(textwrap.dedent(UDFS))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "esb_test_udfs"


def run(ref: str, env: Envelope) -> Envelope:
    return build_chain([{"python": ref}], base_dir=Path("."))(env)


def json_env(data: object = None) -> Envelope:
    return Envelope(source="t", type="t", data=data if data is not None else {"a": 1})


def test_returning_an_envelope(udfs: str) -> None:
    assert run(f"{udfs}:retag", json_env()).subject == "retagged"


def test_returning_data(udfs: str) -> None:
    out = run(f"{udfs}:as_dict", json_env())
    assert (out.data, out.datacontenttype) == ({"wrapped": {"a": 1}}, "application/json")
    assert run(f"{udfs}:Holder.nested", json_env()).data == [1, 2]
    text = run(f"{udfs}:as_text", json_env())
    assert (text.data, text.datacontenttype) == ("plain", "text/plain")
    xml = Envelope(source="t", type="t", datacontenttype="application/xml", data="<a/>")
    assert run(f"{udfs}:as_text", xml).datacontenttype == "application/xml"


def test_returning_none_is_an_error(udfs: str) -> None:
    with pytest.raises(TransformError, match="returned None"):
        run(f"{udfs}:forget", json_env())


def test_drop_and_delivery_errors_propagate(udfs: str) -> None:
    with pytest.raises(DropEnvelope):
        run(f"{udfs}:drop", json_env())
    with pytest.raises(TransientError, match="lookup service down"):
        run(f"{udfs}:later", json_env())


def test_unexpected_exception_is_wrapped_with_the_step_name(udfs: str) -> None:
    with pytest.raises(TransformError) as info:
        run(f"{udfs}:broken", json_env())
    assert info.value.step == "python"
    assert "KeyError: 'missing'" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)


@pytest.mark.parametrize(("ref", "message"), [
    ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
    ("esb_test_udfs:nope", "has no attribute 'nope'"),
    ("not-an-entry-point", "expected 'module:function'"),
])
def test_bad_references_fail_at_build_time(udfs: str, ref: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run(ref, json_env())


def test_plain_function_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    def shout(env: Envelope) -> str:
        return str(env.data).upper()

    registry = Registry(TRANSFORMERS_GROUP, "transformer", extra={"shout": shout})
    monkeypatch.setattr("esb.transformers.python.transformer_registry", lambda: registry)
    env = Envelope(source="t", type="t", datacontenttype="text/plain", data="hi")
    assert run("shout", env).data == "HI"
    # ...and as a step of its own, without options.
    chain = build_chain(["shout"], base_dir=Path("."), registry=registry)
    assert chain(env).data == "HI"
