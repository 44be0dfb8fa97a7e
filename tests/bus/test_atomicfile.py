"""write_atomically on a real folder: the whole new file or the old one, the mode asked for,
nothing left beside it when the write fails."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from esb.bus.atomicfile import write_atomically


def test_it_replaces_the_file_whole_with_the_mode_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    write_atomically(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    umask = os.umask(0)
    os.umask(umask)
    write_atomically(tmp_path / "out.xml", b"<a/>")
    assert stat.S_IMODE((tmp_path / "out.xml").stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.xml", "state.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(OSError):
        write_atomically(target, b"data")
    assert target.is_dir() and list(tmp_path.iterdir()) == [target]
