"""Stylesheets and schemas a route names must lie inside the configuration folder, and the
answer does not tell a deployer whether a file outside exists; an ``xsl:include``/``xsl:import``
that escapes is reported against the stylesheet that holds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from esb.bus.errors import ConfigError
from esb.bus.routing.router import compile_routes
from esb.bus.routing.routeset import parse_route_files
from esb.transformers.chain import build_chain

XSL = '<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">'


def route_errors(base: Path, step: str) -> list[str]:
    files = {"r.yaml": "routes:\n  - name: r\n    to:\n      - destination: out\n"
                       f"        transform: [{step}]\n"}
    with pytest.raises(ConfigError) as info:
        compile_routes(parse_route_files(files), sources=[], destinations=["out"],
                       base_dir=base)
    return info.value.problems


@pytest.mark.parametrize("kind", ["xslt", "xsd", "xml-to-json: {types: %s}"])
def test_files_outside_the_folder_get_one_answer_whether_they_exist_or_not(
        tmp_path: Path, kind: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "real.xml").write_text("<secret/>")

    def step(path: str) -> str:
        return "{" + (kind % path if "%s" in kind else f"{kind}: {path}") + "}"

    answers = []
    for target in ("/etc/passwd", str(tmp_path / "real.xml"), str(tmp_path / "absent.xsl"),
                   "../real.xml"):
        problems = route_errors(project, step(target))
        assert len(problems) == 1 and "lies outside the configuration folder" in problems[0]
        assert problems[0].startswith("r.yaml:5:")
        answers.append(problems[0].replace(target, "<path>"))
    assert len(set(answers)) == 1, answers


def test_a_symlink_out_of_the_folder_is_outside(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "x.xsl").write_text(XSL + "</xsl:stylesheet>")
    (project / "link.xsl").symlink_to(tmp_path / "x.xsl")
    assert "outside the configuration folder" in route_errors(project, "{xslt: link.xsl}")[0]


@pytest.mark.parametrize("kind", ["include", "import"])
def test_an_escaping_include_is_reported_against_the_stylesheet_holding_it(
        tmp_path: Path, kind: str) -> None:
    (tmp_path / "xslt" / "lib").mkdir(parents=True)
    (tmp_path / "xslt" / "main.xsl").write_text(
        XSL + f'<xsl:{kind} href="lib/inner.xsl"/></xsl:stylesheet>')
    (tmp_path / "xslt" / "lib" / "inner.xsl").write_text(
        XSL + f'<xsl:{kind} href="../../../outside.xsl"/></xsl:stylesheet>')
    problems = route_errors(tmp_path, "{xslt: xslt/main.xsl}")
    assert problems[0].startswith("r.yaml:5:")
    assert f"lib/inner.xsl: xsl:{kind} '../../../outside.xsl'" in problems[0], problems


def test_the_command_line_may_name_its_own_files(tmp_path: Path) -> None:
    (tmp_path / "own.xsl").write_text(XSL + '<xsl:template match="/"><ok/></xsl:template>'
                                      "</xsl:stylesheet>")
    chain = build_chain([{"xslt": str(tmp_path / "own.xsl")}], base_dir=tmp_path / "elsewhere",
                        confine=False)
    assert chain.steps == ["xslt"]
