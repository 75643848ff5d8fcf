"""Reading and writing the archives `python -m ember cache export/import` moves between machines.

An archive is untrusted input (it may come from anywhere), so members are never extracted with
tarfile/zipfile's own extract functions: `read_archive` returns (name, bytes) pairs after refusing
the whole archive if any member could escape the cache folder (an absolute path, a `..` part) or is
not a plain file (a link or a device node), and after bounding sizes so a crafted archive cannot
fill the disk or the memory. Whether the bytes are a valid cache file is checked by the caller
(cache.py), member by member.
"""
from __future__ import annotations

import io
import os
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from ..atomic_io import atomic_writer

# Decision files are a few KiB and generated modules rarely exceed a few hundred; these limits are
# far above both and only stop hostile or broken archives.
MAX_MEMBER_BYTES = 16 << 20
MAX_TOTAL_BYTES = 1 << 30
SUFFIXES = (".tar.gz", ".tgz", ".zip")


class ArchiveError(Exception):
    """The archive cannot be used at all; the message names the file and the cause."""


def archive_format(path: str | os.PathLike) -> str:
    """"zip" or "tar.gz", from the file name; anything else is an error (the user picks by name)."""
    name = str(path).lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    raise ArchiveError(f"{path}: unknown archive type; name it *.tar.gz, *.tgz or *.zip")


def write_archive(dest: str | os.PathLike, members: list[tuple[str, bytes]]) -> Path:
    """Write members to dest atomically (temp file in the same folder, then os.replace)."""
    dest = Path(dest)
    fmt = archive_format(dest)
    if not dest.parent.is_dir():
        raise ArchiveError(f"{dest}: folder {dest.parent} does not exist")
    with atomic_writer(dest, "wb") as f:
        if fmt == "zip":
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
                for name, data in members:
                    z.writestr(name, data)
        else:
            with tarfile.open(fileobj=f, mode="w:gz") as t:
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    info.mode = 0o644
                    t.addfile(info, io.BytesIO(data))
    return dest


def _check_name(path: Path, name: str) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or "\\" in name or ".." in p.parts or (p.parts and ":" in p.parts[0]):
        raise ArchiveError(f"{path}: member {name!r} points outside the cache folder; nothing imported")
    return str(p)


def read_archive(path: str | os.PathLike) -> list[tuple[str, bytes]]:
    """All plain-file members as (normalized name, bytes); directories are left out."""
    path = Path(path)
    if not path.is_file():
        raise ArchiveError(f"{path}: no such file")
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        return _read_tar(path)
    except ArchiveError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise ArchiveError(f"{path}: not a readable .tar.gz or .zip archive ({e})") from None


def _counted(path: Path, name: str, size: int, total: int) -> int:
    """The bytes read so far plus this member's, or ArchiveError when either limit is passed."""
    if size > MAX_MEMBER_BYTES or total + size > MAX_TOTAL_BYTES:
        raise ArchiveError(f"{path}: member {name!r} is too large ({size} bytes)")
    return total + size


def _read_tar(path: Path) -> list[tuple[str, bytes]]:
    out, total = [], 0
    # export writes gzip only; "r:*" would also try bz2/xz/plain and report all four failures
    with tarfile.open(path, "r:gz") as t:
        members = t.getmembers()  # reads the whole index first: a truncated file fails here
        for m in members:  # check every name before reading any data
            _check_name(path, m.name)
            if not (m.isfile() or m.isdir()):
                raise ArchiveError(f"{path}: member {m.name!r} is a link or special file; nothing imported")
        for m in members:
            if m.isdir():
                continue
            total = _counted(path, m.name, m.size, total)
            out.append((_check_name(path, m.name), t.extractfile(m).read()))
    return out


def _read_zip(path: Path) -> list[tuple[str, bytes]]:
    out, total = [], 0
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        for i in infos:
            _check_name(path, i.filename)
            if (i.external_attr >> 16) & 0o170000 == 0o120000:  # a symlink stored by Unix zip
                raise ArchiveError(f"{path}: member {i.filename!r} is a link; nothing imported")
        for i in infos:
            if i.is_dir():
                continue
            total = _counted(path, i.filename, i.file_size, total)
            out.append((_check_name(path, i.filename), z.read(i)))
    return out
