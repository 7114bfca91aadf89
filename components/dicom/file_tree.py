"""Listing a local folder tree that nobody checked: the one walk for ingest and the clients.

A hospital export (or a folder given to `mspipe predict` / `mspipe rollout analyze`) may hold
links that loop or dangle, folders that cannot be opened, names in a legacy encoding and the
same file reachable twice. The walk never stops or hangs: every entry ends either as a file to
read or as a `Skipped` entry with a reason (ingest writes it to the ledger):

- `undecodable_name`: the path below the root is not valid UTF-8 (ingest: not read, the name
  could not travel as text through Beam's coders, the ledger or a remote store).
- `dangling_link`: a symbolic link whose target does not exist.
- `symlink_loop`: a link that resolves to itself (ELOOP), or a folder that is one of its own
  ancestors (a directory cycle, found by (device, inode), never followed).
- `already_listed`: a file or folder already listed under another name (a symbolic or hard
  link to it): read once, under the first name in sorted walk order.
- `outside_root`: a link whose target lies outside the root, when the caller refuses those
  (ingest does: see components/dicom_example_gen/discovery.py).
- `unreadable_folder`: a folder (or an entry) that cannot be listed or examined.
Walked with os.scandir/os.stat, which tell links apart and give (device, inode). Nothing here
logs or raises a path: the names are raw UIDs and patient folders; callers log counts.
Pure (standard library): the light clients import it.
"""
from __future__ import annotations

import collections
import errno
import os
import stat as stat_module
from dataclasses import dataclass, field

UNDECODABLE_NAME = "undecodable_name"
DANGLING_LINK = "dangling_link"
SYMLINK_LOOP = "symlink_loop"
ALREADY_LISTED = "already_listed"
OUTSIDE_ROOT = "outside_root"
UNREADABLE_FOLDER = "unreadable_folder"

_DETAILS = {
    UNDECODABLE_NAME: "the path is not valid UTF-8; the file was not read",
    DANGLING_LINK: "a symbolic link whose target does not exist",
    SYMLINK_LOOP: "a symbolic link that leads back to itself or to a folder above it",
    ALREADY_LISTED: "the same file or folder was already listed under another name; read once",
    OUTSIDE_ROOT: "a symbolic link that leads outside the data folder; not followed",
    UNREADABLE_FOLDER: "the folder or entry could not be listed",
}


@dataclass(frozen=True)
class FoundFile:
    """A file to read; size and mtime from the walk's own stat (None on remote roots)."""

    relative_path: str           # '/'-separated below the data folder, valid UTF-8
    size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class Skipped:
    """An entry that is not read. `relative_path` is for hashing into the ledger's file_id
    (undecodable bytes escaped), never for logs."""

    relative_path: str
    reason: str

    @property
    def detail(self) -> str:
        return _DETAILS[self.reason]


@dataclass(frozen=True)
class Listing:
    files: tuple[FoundFile, ...]
    skipped: tuple[Skipped, ...] = ()

    def skipped_counts(self) -> dict[str, int]:
        """Reason -> count, sorted: what callers may log."""
        return dict(sorted(collections.Counter(s.reason for s in self.skipped).items()))




def is_local(path: str) -> bool:
    """No URL scheme (gs://, hdfs://...): the local filesystem, where links exist."""
    return "://" not in path or path.startswith("file://")


def printable(relative_path: str) -> str:
    """The path as valid UTF-8 text: undecodable bytes become \\xNN (stable, for hashing)."""
    return relative_path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_utf8(relative_path: str) -> bool:
    try:
        relative_path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def file_key(path: str) -> tuple[int, int] | None:
    """(device, inode) of what the path leads to; None when it cannot be examined."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_dev, found.st_ino)


def _scandir(path: str) -> list[os.DirEntry]:
    """One folder's entries; a seam for tests that must simulate a folder root can open."""
    with os.scandir(path) as entries:
        return list(entries)


def walk_local(root: str, *, labels_path: str = "", root_files: bool = False,
               skip_hidden: bool = False, follow_outside: bool = False,
               seen: "WalkMemory | None" = None) -> Listing:
    """Every entry below a local folder, sorted, as files to read or skipped entries.

    `root_files`: list files directly in the root too (ingest does not: the labels files, a
    README). `skip_hidden`: leave out names starting with '.' (the clients). `follow_outside`:
    follow links that leave the root (the clients) instead of `outside_root`. `seen`: what
    earlier walks listed, shared across several roots so a file or folder given twice is
    read once.
    """
    memory = WalkMemory() if seen is None else seen
    return _LocalWalk(root, labels_path, root_files, skip_hidden, follow_outside,
                      seen_files=memory.files, seen_folders=memory.folders).run()


@dataclass
class WalkMemory:
    """(device, inode) of the files and folders listed so far."""

    files: set[tuple[int, int]] = field(default_factory=set)
    folders: set[tuple[int, int]] = field(default_factory=set)


@dataclass
class _LocalWalk:
    """Depth-first, sorted walk with os.scandir; follows links (inside the root) once."""

    input_base: str
    labels_path: str
    root_files: bool = False
    skip_hidden: bool = False
    follow_outside: bool = False
    files: list[FoundFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seen_files: set[tuple[int, int]] = field(default_factory=set)
    seen_folders: set[tuple[int, int]] = field(default_factory=set)

    def run(self) -> Listing:
        self.root = os.path.realpath(self.input_base)
        self.labels = file_key(self.labels_path) if self.labels_path else None
        root_stat = os.stat(self.input_base)
        root_key = (root_stat.st_dev, root_stat.st_ino)
        if root_key not in self.seen_folders:  # else an earlier walk listed it all
            self._walk_folder(self.input_base, "", (root_key,))
        return Listing(tuple(self.files), tuple(self.skipped))

    def _walk_folder(self, path: str, relative: str, ancestors: tuple[tuple[int, int], ...]) -> None:
        self.seen_folders.add(ancestors[-1])
        try:
            entries = sorted(_scandir(path), key=lambda entry: entry.name)
        except OSError:
            self._skip(relative, UNREADABLE_FOLDER)
            return
        for entry in entries:
            if self.skip_hidden and entry.name.startswith("."):
                continue
            child = f"{relative}/{entry.name}" if relative else entry.name
            self._visit(entry, child, ancestors, at_root=not relative)

    def _visit(self, entry: os.DirEntry, relative: str,
               ancestors: tuple[tuple[int, int], ...], at_root: bool) -> None:
        target = self._target_stat(entry, relative)
        if target is None:
            return
        key = (target.st_dev, target.st_ino)
        if stat_module.S_ISDIR(target.st_mode):
            if key in ancestors:
                self._skip(relative, SYMLINK_LOOP)
            elif key in self.seen_folders:
                self._skip(relative, ALREADY_LISTED)
            else:
                self._walk_folder(entry.path, relative, ancestors + (key,))
            return
        if (at_root and not self.root_files) or key == self.labels:
            return
        if not _is_utf8(relative):
            self._skip(relative, UNDECODABLE_NAME)
        elif key in self.seen_files:
            self._skip(relative, ALREADY_LISTED)
        else:
            self.seen_files.add(key)
            self.files.append(FoundFile(relative, target.st_size, target.st_mtime_ns))

    def _target_stat(self, entry: os.DirEntry, relative: str) -> os.stat_result | None:
        """The stat of what the entry leads to, or None after recording why it is skipped."""
        try:
            if entry.is_symlink() and not self.follow_outside:
                resolved = os.path.realpath(entry.path)
                if os.path.commonpath([resolved, self.root]) != self.root:
                    self._skip(relative, OUTSIDE_ROOT)
                    return None
            return os.stat(entry.path)  # follows links
        except FileNotFoundError:
            self._skip(relative, DANGLING_LINK)
        except OSError as error:
            self._skip(relative, SYMLINK_LOOP if error.errno == errno.ELOOP else UNREADABLE_FOLDER)
        except ValueError:  # commonpath across drives (Windows)
            self._skip(relative, OUTSIDE_ROOT)
        return None

    def _skip(self, relative: str, reason: str) -> None:
        self.skipped.append(Skipped(printable(relative), reason))
