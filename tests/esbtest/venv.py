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
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Overlay:
    root: Path

    @property
    def python(self) -> str:
        return str(self.root / "bin" / "python")

    def install(self, project: Path, timeout: float = 300) -> None:
        """``pip install -e project --no-deps`` into the overlay only (its dependencies are
        the running environment's)."""
        result = subprocess.run([self.python, "-m", "pip", "install", "-q", "--no-deps",
                                 "--disable-pip-version-check", "-e", str(project)],
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"pip install -e {project} failed:\n{result.stderr}"

    def run(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run ``python *args`` in the overlay (text output captured)."""
        return subprocess.run([self.python, *args], capture_output=True, text=True, **kw)


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
