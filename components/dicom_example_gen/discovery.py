"""Which files under the data folder are read, and why every other entry is not.

The local walk itself is components/dicom/file_tree.py (shared with the clients' listing, so
a file reached twice is read once there too); this module is ingest's policy on top of it and
the listing of remote roots.

A hospital export is a folder tree nobody checked: links that loop or dangle, folders the
pipeline may not open, names in a legacy encoding, the same file reachable twice. Listing must
never stop or hang a run, so every entry ends either as a file to read or as a `Skipped`
entry with a reason from components.dicom.rejections (the executor writes it to the ledger):

- `undecodable_name`: the path below the data folder is not valid UTF-8. It is not read: the
  name could not travel as text through Beam's coders, the ledger or a remote store, and such
  a name usually means a broken copy (rename the file to include it).
- `dangling_link`: a symbolic link whose target does not exist.
- `symlink_loop`: a link that resolves to itself (ELOOP), or a folder that is one of its own
  ancestors (a directory cycle, found by (device, inode), never followed).
- `already_listed`: a file or folder already listed under another name (a symbolic or hard
  link to it): read once, under the first name in sorted walk order.
- `outside_root`: a link whose target lies outside the data folder. Refused, not followed:
  the data folder is the unit of what is ingested, fingerprinted for the cache and reviewed,
  and links that leave it are usually absolute paths of the machine the export came from.
  Copy the files in (`cp -rL`) to include them.
- `unreadable_folder`: a folder (or an entry) that cannot be listed or examined (permissions,
  I/O). Files that cannot be read are found later by the reader (`unreadable_file`).
Files directly in the data folder are not scans of the scanner/study/series layout (the labels
files, a README, a DICOMDIR) and are not listed; nor is the labels file wherever it is.

Local roots are walked with os.scandir/os.stat, which tell links apart and give (device,
inode); other roots (gs://, ...) through TFX's fileio, which has no links and no cycles there
(a listing error is one `unreadable_folder` entry). Nothing here logs or raises a path: the
names are raw UIDs and patient folders; callers log counts by reason.
"""
from __future__ import annotations

import os

from components.dicom.file_tree import (  # noqa: F401 -- ingest's names for the reasons
    ALREADY_LISTED, DANGLING_LINK, OUTSIDE_ROOT, SYMLINK_LOOP, UNDECODABLE_NAME,
    UNREADABLE_FOLDER, FoundFile, Listing, Skipped, is_local, printable, walk_local)


def list_tree(input_base: str, labels_path: str = "") -> Listing:
    """Every entry below input_base, sorted, as files to read or skipped entries: files
    directly in the data folder are not scans, links leaving it are `outside_root`."""
    if is_local(input_base):
        return walk_local(input_base, labels_path=labels_path)
    return _remote_listing(input_base, labels_path)


def _remote_listing(input_base: str, labels_path: str) -> Listing:
    """fileio.walk for object stores: no links there; a listing error is one skipped entry."""
    from tfx.dsl.io import fileio

    files: list[FoundFile] = []
    skipped: list[Skipped] = []
    base = input_base.rstrip("/")

    def on_error(_error: Exception) -> None:
        skipped.append(Skipped(f"<listing error {len(skipped)}>", UNREADABLE_FOLDER))

    for directory, _, file_names in fileio.walk(input_base, onerror=on_error):
        relative_dir = os.fspath(directory).rstrip("/")[len(base):].lstrip("/")
        if not relative_dir:
            continue
        for file_name in file_names:
            path = os.path.join(os.fspath(directory), file_name)
            if labels_path and path == labels_path:
                continue
            files.append(FoundFile(f"{relative_dir}/{file_name}"))
    return Listing(tuple(sorted(files, key=lambda f: f.relative_path)), tuple(skipped))
