"""Files of the workspace: written so that readers see the old one or the whole new one, never
a part, and named so that a name read from a request, a command line or a file stays inside the
folder it names a file of."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["inside", "replaced_atomically"]


@contextlib.contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends without an error it
    replaces ``path`` in one step (a rename), otherwise it is removed. The name carries the
    process id and a random part, so processes and threads writing the same file at once do not
    mix their writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield temporary
        temporary.replace(path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def inside(folder: Path, name: str) -> Path:
    """``folder / name`` when that names something inside ``folder``; otherwise ``ValueError``
    saying why. Refused: an empty or absolute name, a ``..`` part, a NUL or other control
    character, and a name that leads out through a symbolic link."""
    if not name or any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise ValueError(f"{name!r} is not a file name")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{name!r} leads outside {folder}")
    path = folder / relative
    base = folder.resolve()
    if not path.resolve().is_relative_to(base):
        raise ValueError(f"{name!r} leads outside {folder} (through a link)")
    return path
