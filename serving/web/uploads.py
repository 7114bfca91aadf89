"""An upload (loose files and/or zips of a study folder) -> named byte strings, in memory.

Nothing touches the disk: the multipart body is parsed into memory (bounded by the upload
limit) and a zip's members are inflated one at a time, each when its turn comes to be
scored (serving/web/analysis.py), so memory holds the upload plus one member, never the whole
expanded zip. There is no folder to clean up and no copy of
patient data left behind when the answer has gone out. Names are kept only to show them back
to the person who uploaded them; they may hold patient names and are never logged.

A zip is refused as a whole, with the reason in plain words, when it could be hostile or is
unusable: paths that leave its folder (`../`, absolute paths), links, encryption, more content
than the limits, damage, or nothing in it. The files inside a good zip are then judged one by one
by the shared preprocessing, like loose files.
"""
from __future__ import annotations

import contextlib
import functools
import io
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from components.dicom.preprocessing import sniff_format
from serving.web.settings import MB, WebSettings

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty zip
SKIPPED_PARTS = ("__MACOSX",)
SNIFF_BYTES = 512  # enough for the DICOM preamble + 'DICM' and the PNG/JPEG signatures  # resource forks macOS adds to every zip it makes


class UploadError(ValueError):
    """The upload as a whole cannot be used; the message is shown to the user as is."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class UploadedFile:
    """One file of an upload. `read` gives its bytes when the file's turn comes to be scored:
    a zip member is inflated then, one at a time, so an upload never holds all of a zip's
    content at once (a 385 KB zip can honestly hold 395 MB)."""

    name: str                   # as the user knows it: the file name, or its path inside the zip
    size: int                   # bytes (a zip member's declared size: zipfile enforces it)
    read: Callable[[], bytes]


def loose_file(name: str, data: bytes) -> UploadedFile:
    return UploadedFile(name, len(data), lambda: data)


def megabytes(size: int) -> str:
    """'200 MB', '2.3 MB': the same rounding as the page's own check (static/app.js)."""
    return f"{size / MB:.1f}".removesuffix(".0") + " MB"


def too_large_message(size: int, limit: int) -> str:
    return (f"The upload is {megabytes(size)}; the limit is {megabytes(limit)} per upload. "
            "Upload one study at a time (a zip of the study folder is smaller).")


def expand_uploads(files: Iterable[tuple[str, bytes]], settings: WebSettings
                   ) -> list[UploadedFile]:
    """Loose files stay as they are; each zip becomes its member files, in name order, checked
    as a whole (safety, counts, declared sizes) here and read later, member by member."""
    expanded: list[UploadedFile] = []
    unzipped_bytes = 0
    for name, data in files:
        if is_zip(data):
            members = open_zip(name, data, settings, budget=settings.max_unzipped_bytes
                               - unzipped_bytes)
            unzipped_bytes += sum(member.size for member in members)
            expanded.extend(members)
        else:
            expanded.append(loose_file(name, data))
        if len(expanded) > settings.max_files:
            raise UploadError(f"The upload holds more than {settings.max_files} files. "
                              "Upload one study at a time.", status=413)
    if not expanded:
        raise UploadError("No file was received. Choose one or more .dcm files, a .zip of a "
                          "study folder, or a .jpg/.png image.")
    return expanded


def is_zip(data: bytes) -> bool:
    """By content, like DICOM: a DICOM or image file is never taken for a zip."""
    return sniff_format(data[:SNIFF_BYTES]) is None and data[:4] in ZIP_MAGIC


def open_zip(name: str, data: bytes, settings: WebSettings, budget: int
             ) -> list[UploadedFile]:
    """The zip's files, each read on demand; refused as a whole before any is read."""
    with damage_refused(name):
        archive = zipfile.ZipFile(io.BytesIO(data))
    members = [info for info in archive.infolist() if not info.is_dir()]
    check_members(name, members, settings, budget)
    return [UploadedFile(info.filename, info.file_size,
                         functools.partial(read_member, archive, info, name))
            for info in sorted(members, key=lambda i: i.filename)
            if not is_skipped(info.filename)]


@contextlib.contextmanager
def damage_refused(name: str) -> Iterator[None]:
    """A damaged zip is refused as a whole, whether found on opening it or on reading a
    member (a bad CRC, a cut stream)."""
    try:
        yield
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as error:
        raise UploadError(f"The zip file {name!r} is damaged or incomplete, or uses a "
                          f"compression this tool cannot read ({type(error).__name__}). "
                          "Make the zip again and retry.") from None


def check_members(name: str, members: list[zipfile.ZipInfo], settings: WebSettings,
                  budget: int) -> None:
    """Refuse the whole zip before reading any member when it is unsafe or too big."""
    for info in members:
        if not is_safe_member_name(info.filename):
            raise UploadError(f"The zip file {name!r} was refused for safety: it holds a path "
                              "that points outside its folder ('../' or an absolute path). "
                              "Nothing in it was read.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UploadError(f"The zip file {name!r} was refused for safety: it holds a "
                              "symbolic link. Zip the study files themselves.")
        if info.flag_bits & 0x1:
            raise UploadError(f"The zip file {name!r} is password-protected; upload an "
                              "unencrypted zip.")
    if not [info for info in members if not is_skipped(info.filename)]:
        raise UploadError(f"The zip file {name!r} is empty: it holds no files. Zip the study "
                          "folder itself (with its files), not an empty folder.")
    if len(members) > settings.max_files:
        raise UploadError(f"The zip file {name!r} holds {len(members)} files; the limit is "
                          f"{settings.max_files}. Upload one study at a time.", status=413)
    declared = sum(info.file_size for info in members)
    if declared > budget:
        raise UploadError(f"The zip file {name!r} unpacks to {megabytes(declared)}; the "
                          f"limit is {megabytes(settings.max_unzipped_bytes)} per upload. "
                          "Upload one study at a time.", status=413)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, zip_name: str) -> bytes:
    """zipfile stops at the declared size and checks the CRC: a lying header cannot inflate.

    A member that is no DICOM, JPEG or PNG by its first bytes (how the preprocessing judges
    content: `sniff_format`) is returned as those bytes only: the preprocessing gives it its
    `not_dicom` reason from them, and a large member of anything else is never inflated.
    """
    with damage_refused(zip_name), archive.open(info) as stream:
        head = stream.read(SNIFF_BYTES)
        if sniff_format(head) is None:
            return head
        stream.seek(0)
        return stream.read(info.file_size + 1)


def is_safe_member_name(filename: str) -> bool:
    path = filename.replace("\\", "/")
    parts = PurePosixPath(path).parts
    return not (path.startswith("/") or (len(path) > 1 and path[1] == ":") or ".." in parts)


def is_skipped(filename: str) -> bool:
    """Hidden files and macOS resource forks are not part of a study (as serving.client.predict skips
    hidden files in folders)."""
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    return any(part.startswith(".") or part in SKIPPED_PARTS for part in parts)

