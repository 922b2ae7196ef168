"""Atomic file replacement: readers see the old file or the whole new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoprec.files import replaced_atomically


def test_the_file_is_replaced_when_the_block_ends(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "run" / "file.bin"  # missing folders are made
    with replaced_atomically(target) as temporary:
        temporary.write_bytes(b"new")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("old")

    def write_half() -> None:
        with replaced_atomically(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError):
        write_half()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]
