"""Summaries of py-spy's raw (collapsed-stack) output.

    python -m harness.profile FILE [--top N]

Each line of ``py-spy record --format raw`` is ``frame;frame;...;leaf COUNT`` with frames like
``function (path/to/file.py:123)``. Prints the share of samples per package (by the sampled
leaf frame: where the CPU was), the top functions by self samples, and the top functions by
inclusive samples (present anywhere on the stack).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_STDLIB = re.compile(r"/lib/python3\.\d+/(?P<mod>[^/]+)")
#: This checkout's root (bench/harness/ is two below it): esb's files when py-spy prints them
#: with their full path.
_CHECKOUT = str(Path(__file__).resolve().parents[2]) + "/"


def package(path: str) -> str:
    """A short owner for a file: ``esb.<subpackage>``, a third-party package or a stdlib
    module. py-spy prints paths relative to their ``sys.path`` entry (``aiohttp/client.py``,
    ``bus/runtime/ingress.py`` for esb's editable install)."""
    for marker in ("/site-packages/", "/dist-packages/", _CHECKOUT):
        if marker in path:
            path = path.split(marker, 1)[1]
    m = _STDLIB.search(path)
    if m:
        path = m.group("mod") + "/"
    if path.startswith(("bus/", "adapters/", "transformers/")):
        parts = path.split("/")
        return "esb." + ".".join(p.removesuffix(".py") for p in parts[:2])
    if path.startswith("<frozen"):
        return "stdlib"
    return path.split("/", 1)[0].removesuffix(".py") or "?"


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for raw in stack.split(";"):
        m = _FRAME.match(raw.strip())
        if m:
            out.append((m.group("func"), m.group("file")))
    return out


def load(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            frames = _frames(stack)
            if frames:
                stacks.append((frames, int(count)))
    return stacks


def summarize(path: Path, top: int = 15) -> str:
    stacks = load(path)
    total = sum(c for _, c in stacks)
    if not total:
        return f"{path}: no samples"
    by_pkg: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    for frames, count in stacks:
        func, file = frames[-1]
        by_pkg[package(file)] += count
        self_fn[f"{func} ({package(file)})"] += count
        for name in {f"{f} ({package(p)})" for f, p in frames}:
            incl_fn[name] += count

    def block(title: str, counter: Counter[str]) -> list[str]:
        return [title] + [f"  {100 * c / total:5.1f} %  {k}" for k, c in
                          counter.most_common(top)]

    lines = [f"{path.name}: {total} samples (CPU only; idle waits excluded)"]
    lines += block("self samples by package:", by_pkg)
    lines += block("self samples by function:", self_fn)
    lines += block("inclusive samples by function:", incl_fn)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    print(summarize(args.file, args.top))


if __name__ == "__main__":
    main()
