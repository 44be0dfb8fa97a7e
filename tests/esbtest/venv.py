"""A throwaway virtualenv layered on the one the suite runs in, for tests that install a
package (the worked plugin example, a scaffolded adapter).

The suite never installs into its own environment: the running interpreter would not see an
editable install made mid-run, while its entry points would already be listed, so other tests
(and other xdist workers) would meet a half-installed plugin. An overlay sees every package of
the running environment (esb, its dependencies, pytest) through a ``.pth`` file and gets only
the packages a test installs; the test then runs its subprocesses with :attr:`Overlay.python`.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.version import Version

#: pytest plugins of the suite's own environment that a plugin package's environment does not
#: have: an overlay's pytest runs without them (they cost over a second of imports a run).
SUITE_ONLY_PLUGINS = ("-p", "no:schemathesis", "-p", "no:hypothesispytest")


@dataclass(frozen=True)
class Overlay:
    root: Path

    @property
    def python(self) -> str:
        return str(self.root / "bin" / "python")

    def install(self, project: Path, timeout: float = 300) -> None:
        """``pip install -e project --no-deps`` into the overlay only (its dependencies are
        the running environment's).

        When the running environment has the project's build requirements (``[test]`` lists
        setuptools and wheel), the build uses them (``--no-build-isolation``); otherwise pip
        first installs them into a build environment of its own, from the package index,
        which costs several seconds a package."""
        # Nothing to fetch on the first path: --no-index keeps pip off the network.
        here = ["--no-build-isolation", "--no-index"] if can_build(project) else []
        result = subprocess.run([self.python, "-m", "pip", "install", "-q", "--no-deps",
                                 "--disable-pip-version-check", *here, "-e", str(project)],
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"pip install -e {project} failed:\n{result.stderr}"

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``python *args`` in the overlay (text output captured)."""
        return subprocess.run([self.python, *args], capture_output=True, text=True, **kw)

    def pytest(self, project: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a project's own suite with the overlay's pytest, in the project's folder,
        without the cache and without :data:`SUITE_ONLY_PLUGINS`."""
        return self.run("-m", "pytest", "-p", "no:cacheprovider", *SUITE_ONLY_PLUGINS, *args,
                        cwd=project, **kw)


def can_build(project: Path) -> bool:
    """Does the running environment hold everything building `project` (editable) needs?
    Its declared build requirements, and wheel when setuptools is older than 70.1 (whose
    build hooks ask for wheel on top of what a project declares)."""
    try:
        requires = tomllib.loads((project / "pyproject.toml").read_text())["build-system"][
            "requires"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return False
    for text in requires:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        have = installed(req.name)
        if have is None or not req.specifier.contains(have, prereleases=True):
            return False
    setuptools = installed("setuptools")
    return setuptools is None or setuptools >= Version("70.1") or installed("wheel") is not None


def installed(name: str) -> Version | None:
    """The version of distribution `name` in the running environment, or None."""
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


def overlay(root: Path) -> Overlay:
    """Create an overlay virtualenv at ``root``."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True,
                   timeout=120)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(root),
                                                       "platbase": str(root)}))
    parents = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        parents.append(site.getusersitepackages())
    # addsitedir (not a bare path line) so the parent's own .pth files run too: esb itself is
    # an editable install found through one.
    (purelib / "_esbtest_parent.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in parents))
    return Overlay(root)


def copy_project(source: Path, dest: Path) -> Path:
    """Copy a project to ``dest`` without build leftovers, so installing it writes nothing
    into the repository (setuptools puts ``*.egg-info`` next to the sources)."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    return dest
