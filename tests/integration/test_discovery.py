"""File discovery never stops or hangs a run (issue 12, item 1 and the table's name/link rows).

A small synthetic export, under a folder named like a patient, gets one bad entry per row of
the issue's table, planted in a real series folder so every path carries raw UIDs: a
non-UTF-8 name, a file symlink loop, a folder symlink loop, a dangling link, an unreadable
folder, a symlink to a good file, plus a link leaving the data folder (the documented
`outside_root` policy), and two files whose header values pydicom's validation would echo.
The listing is checked alone (fast, with a timeout so a hang fails) and through one
in-process `mspipe ingest` run (in-memory Beam), whose ledger must hold each entry's reason
and whose stdout, stderr, logs, ledger, TFRecords and ML Metadata must hold no raw UID, no
planted name and not the patient folder's name.

Unreadable folder: root ignores permissions, so under root the listing's one folder-opening
seam (`file_tree._scandir`) is patched to raise PermissionError for that folder, as
os.scandir does for a non-root user; otherwise the folder is really `chmod 000`.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.dicom import file_tree
from components.dicom_example_gen import discovery
from components.synthetic import PLANTED_PATIENT_STRINGS, generate_dataset
from support.output_capture import capture_all_output

IMAGE_SIZE = 32
SALT = "test-salt"
IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
LOCKED = "1.2.826.0.1.3680043.77.1"        # a series folder named like a raw UID
OUTSIDE_TARGET = "outside_target_1.2.840.55.dcm"

# row -> (ledger reason, entries with that reason, names planted for it)
ROWS = {
    "non-UTF-8 name": (discovery.UNDECODABLE_NAME, 1, ()),
    "file symlink loop": (discovery.SYMLINK_LOOP, 3, ("loop_a.dcm", "loop_b.dcm")),
    "folder symlink loop": (discovery.SYMLINK_LOOP, 3, ("loop_dir",)),
    "dangling link": (discovery.DANGLING_LINK, 1, ("gone_link.dcm",)),
    "unreadable folder": (discovery.UNREADABLE_FOLDER, 1, (LOCKED,)),
    "symlink to a good file": (discovery.ALREADY_LISTED, 1, ("zz_same_file.dcm",)),
    "link outside the data folder": (discovery.OUTSIDE_ROOT, 1, ("outside_link.dcm",
                                                                 OUTSIDE_TARGET)),
}
NON_UTF8_NAME = b"IM\xff\xfe0001.dcm"
# The whole export sits in a folder named like a patient, above the scanner folders: the
# folder name must reach no output, the scanner feature comes from the header.
PATIENT_FOLDER = "Doe^Jane"
HEADER_SCANNERS = {b"siemens_skyra", b"ge_signa", b"philips_ingenia"}  # the synthetic vendors
# Header values pydicom's validation would echo in a warning (forwarded by Beam workers):
BAD_STUDY_UID = "Doe^Jane.1.2.3x"        # a non-conformant StudyInstanceUID
FRAMES_TEXT = "MRN-4711-XYZ"             # NumberOfFrames holding text (a patient id)
# row -> (ledger reason, rows added, strings planted for it)
HEADER_ROWS = {
    "non-conformant StudyInstanceUID": ("unlabeled_study", 1, (BAD_STUDY_UID,)),
    "NumberOfFrames holding text": ("decode_error", 1, (FRAMES_TEXT,)),
    "a parent folder above the scanner level": (None, 0, (PATIENT_FOLDER,)),
}


@dataclass(frozen=True)
class Export:
    root: Path
    labels: Path
    expected_slices: int
    expected_rejects: dict[str, int]
    secrets: frozenset[str]  # raw UIDs from the paths, planted names and patient strings


def _plant_bad_entries(root: Path, good_file: Path) -> None:
    series = good_file.parent
    os.symlink(good_file.name, series / "zz_same_file.dcm")        # read once
    (series / "loop_a.dcm").symlink_to("loop_b.dcm")
    (series / "loop_b.dcm").symlink_to("loop_a.dcm")
    (series / "loop_dir").symlink_to("..")                           # the study folder
    (series / "gone_link.dcm").symlink_to("nothing_here.dcm")
    shutil.copy(good_file, os.path.join(os.fsencode(series), NON_UTF8_NAME))
    locked = series.parent / LOCKED
    locked.mkdir()
    shutil.copy(good_file, locked / "IM0001.dcm")
    outside = root.parent / OUTSIDE_TARGET
    shutil.copy(good_file, outside)
    (series / "outside_link.dcm").symlink_to(outside)
    _plant_header_value(good_file, series / "IM_bad_uid.dcm", 0x0020000D, "UI", BAD_STUDY_UID)
    _plant_header_value(good_file, series / "IM_frames_text.dcm", 0x00280008, "IS", FRAMES_TEXT)


def _plant_header_value(good_file: Path, target: Path, tag: int, vr: str, value: str) -> None:
    """A copy of a good file with one raw header value no validation would let pydicom write."""
    import pydicom
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    dataset = pydicom.dcmread(good_file)
    raw = value.encode("ascii") + (b"\0" if len(value) % 2 else b"")
    dataset[tag] = RawDataElement(Tag(tag), vr, len(raw), raw, 0, dataset.is_implicit_VR,
                                  dataset.is_little_endian)
    dataset.save_as(target)


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Export:
    dataset = generate_dataset(tmp_path_factory.mktemp("export") / "data", studies=4,
                               slices_per_series=2, plant_defects=False)
    patient = dataset.out_dir / PATIENT_FOLDER
    patient.mkdir()
    for scanner in {record.path.split("/")[0] for record in dataset.files}:
        (dataset.out_dir / scanner).rename(patient / scanner)
    good = next(record for record in dataset.files
                if record.reject_reason is None and record.kind == "axial")
    _plant_bad_entries(dataset.out_dir, patient / good.path)
    raw_uids = {part for record in dataset.files for part in record.path.split("/")[1:3]}
    planted = {name for rows in (ROWS, HEADER_ROWS) for _, _, names in rows.values()
               for name in names}
    rejects = collections.Counter(dataset.expected_rejects)
    rejects.update({reason: count for reason, count, _ in HEADER_ROWS.values() if reason})
    return Export(dataset.out_dir, dataset.labels_csv, dataset.expected_slices, dict(rejects),
                  frozenset(raw_uids | planted | set(PLANTED_PATIENT_STRINGS)
                            | set(dataset.planted_strings) | {"IM\\xff", "\ufffd"}))


@pytest.fixture(scope="module")
def locked_folder(export):
    """The unreadable folder: chmod 000, or under root the patched listing seam."""
    locked = next(export.root.rglob(LOCKED))
    patch = pytest.MonkeyPatch()
    if os.geteuid() == 0:
        real = file_tree._scandir

        def refuse(path: str):
            if os.path.basename(os.path.normpath(path)) == LOCKED:
                raise PermissionError(13, "Permission denied", path)
            return real(path)
        patch.setattr(file_tree, "_scandir", refuse)
    else:
        locked.chmod(0)
    yield locked
    patch.undo()
    locked.chmod(0o755)


def _list_with_timeout(root: Path, seconds: float = 60) -> discovery.Listing:
    """A hang fails the test instead of the suite: the listing runs in a daemon thread."""
    result: list = []
    worker = threading.Thread(target=lambda: result.append(discovery.list_tree(str(root))),
                              daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"listing did not finish in {seconds} s (a cycle followed?)"
    return result[0]


@pytest.mark.parametrize("row", ROWS)
def test_listing_gives_each_bad_entry_its_reason_and_never_hangs(export, locked_folder, row):
    listing = _list_with_timeout(export.root)
    reason, count, _ = ROWS[row]
    assert listing.skipped_counts()[reason] == count
    files = {found.relative_path for found in listing.files}
    assert not any(LOCKED in path or "same_file" in path or "outside" in path for path in files)
    assert all(path.encode("utf-8") for path in files)


def test_cache_fingerprint_lists_the_same_tree_without_error_or_path(export, locked_folder):
    from components.dicom_example_gen.driver import tree_fingerprint

    fingerprint = tree_fingerprint(str(export.root), str(export.labels))
    assert fingerprint.startswith("files:")
    assert not any(secret in fingerprint for secret in export.secrets)


def test_a_hard_link_is_read_once(tmp_path):
    series = tmp_path / "root" / "scanner" / "study" / "series"
    series.mkdir(parents=True)
    (series / "a.dcm").write_bytes(b"x")
    os.link(series / "a.dcm", series / "b.dcm")
    listing = _list_with_timeout(tmp_path / "root")
    assert [found.relative_path for found in listing.files] == ["scanner/study/series/a.dcm"]
    assert listing.skipped_counts() == {discovery.ALREADY_LISTED: 1}


@dataclass(frozen=True)
class IngestRun:
    summary: dict
    ledger: list
    ledger_text: str
    captured: str
    stored: dict[str, bytes]  # every file the run wrote (TFRecords decompressed), and MLMD


@pytest.fixture(scope="module")
def ingest_run(export, locked_folder, tmp_path_factory) -> IngestRun:
    """`mspipe ingest` in-process (in-memory Beam, so the patched seam applies), all output
    captured at the file-descriptor level."""
    from components.dicom_example_gen.ledger import read_ledger
    from mspipe.commands import ingest as cli
    from tfx.orchestration import metadata

    out = tmp_path_factory.mktemp("ingest")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--data", str(export.root), "--labels", str(export.labels),
                              "--out", str(out / "run"), "--json", "--image-size",
                              str(IMAGE_SIZE), "--salt", SALT]
                             + [f"--beam-arg={arg}" for arg in IN_MEMORY])
    with capture_all_output(out / "captured.log"):
        assert cli.run(args) == 0
    captured = (out / "captured.log").read_text(errors="replace")
    summary = cli.read_summary(metadata.sqlite_metadata_connection_config(
        str(out / "run" / "metadata.sqlite")))
    stored = {str(path): gzip.decompress(path.read_bytes()) if path.suffix == ".gz"
              else path.read_bytes() for path in (out / "run").rglob("*") if path.is_file()}
    return IngestRun(summary, read_ledger(summary["ledger"]),
                     Path(summary["ledger"]).read_text(errors="replace"), captured, stored)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a followed folder cycle would hang the fixture's run
@pytest.mark.parametrize("row", ROWS)
def test_ingest_records_each_bad_entry_and_leaks_nothing(export, ingest_run, row):
    reason, count, names = ROWS[row]
    assert ingest_run.summary["rejects"][reason] == count
    rows = [record for record in ingest_run.ledger if record.reason == reason]
    assert len(rows) == count
    assert all(len(record.file_id) == 24 and record.frame_index is None for record in rows)
    # the symlinked good file and the unread copies gave no extra slice
    assert sum(ingest_run.summary["examples"].values()) == export.expected_slices
    for where, text in (("stdout/stderr/logs", ingest_run.captured),
                        ("ledger", ingest_run.ledger_text)):
        for secret in export.secrets | set(names):
            assert secret not in text, f"{secret!r} leaked into {where}"


@pytest.mark.slow
@pytest.mark.parametrize("row", HEADER_ROWS)
def test_ingest_stores_and_prints_no_planted_header_value_or_folder(export, ingest_run, row):
    """Every output: stdout, stderr, logs (pydicom's warnings included), the ledger, the
    TFRecords and ML Metadata."""
    _, _, planted = HEADER_ROWS[row]
    outputs = {"stdout/stderr/logs": ingest_run.captured.encode(), **ingest_run.stored}
    for where, blob in outputs.items():
        for secret in export.secrets | set(planted):
            assert secret.encode() not in blob, f"{secret!r} leaked into {where}"


@pytest.mark.slow
def test_scanner_feature_comes_from_the_header_not_the_parent_folder(ingest_run):
    from components import features
    from components.dicom.records import decode_example, read_tfrecords, tfrecord_files

    scanners = {decode_example(record)[features.SCANNER][0]
                for path in tfrecord_files(ingest_run.summary["output"])
                for record in read_tfrecords(path)}
    assert scanners and scanners <= HEADER_SCANNERS
    assert {record.scanner.encode() for record in ingest_run.ledger} <= HEADER_SCANNERS | {b"unknown"}


@pytest.mark.slow
def test_ingest_rejects_are_the_export_s_plus_the_listing_s(export, ingest_run):
    listed = {reason: count for reason, count, _ in ROWS.values()}
    assert ingest_run.summary["rejects"] == {**export.expected_rejects, **listed}
    assert "entries of the data folder are not read" in ingest_run.captured


def test_remote_roots_are_listed_through_fileio():
    """gs:// and friends go through TFX's fileio (no links there); TensorFlow's in-memory
    ram:// filesystem stands in for a bucket."""
    from tfx.dsl.io import fileio

    from components.dicom_example_gen.driver import tree_fingerprint

    root = "ram://discovery_test/data"
    for path in ("sc/1.2.3/4.5.6/IM2", "sc/1.2.3/4.5.6/IM1", "labels.csv", "sc/labels2.csv"):
        fileio.makedirs(os.path.dirname(f"{root}/{path}"))
        with fileio.open(f"{root}/{path}", "wb") as handle:
            handle.write(b"xy")
    listing = discovery.list_tree(root, f"{root}/sc/labels2.csv")
    assert [found.relative_path for found in listing.files] == ["sc/1.2.3/4.5.6/IM1",
                                                                "sc/1.2.3/4.5.6/IM2"]
    assert listing.skipped == ()
    fingerprint = tree_fingerprint(root, f"{root}/labels.csv")
    assert "files:3,total_bytes:6" in fingerprint and "1.2.3" not in fingerprint  # + labels2


def test_client_listing_reads_a_file_reached_twice_once(tmp_path):
    """`mspipe predict` folders and `rollout analyze` data list through the same walk
    (slices.expand_paths -> file_tree): a symbolic or hard link, a file given twice or a
    folder given inside another is one input; a folder cycle is never followed."""
    from components.dicom.slices import expand_paths

    study = tmp_path / "study"
    (study / "series").mkdir(parents=True)
    (study / "series" / "a.dcm").write_bytes(b"a")
    (study / "series" / "b.dcm").symlink_to("a.dcm")
    os.link(study / "series" / "a.dcm", study / "c.dcm")
    (study / "series" / "d.dcm").write_bytes(b"d")
    (study / "series" / "loop").symlink_to("..")
    (study / ".hidden").write_bytes(b"h")
    inputs = _list_with_timeout_of(lambda: expand_paths(
        [study, study / "series", study / "series" / "d.dcm", study / "c.dcm"]))
    names = sorted(os.path.relpath(item.name, tmp_path) for item in inputs)
    assert names[1:] == ["study/series/d.dcm", "study/series/loop"]  # loop: unreadable_file
    assert names[0] in ("study/c.dcm", "study/series/a.dcm", "study/series/b.dcm")
    assert {item.container for item in inputs} == {str(study)}


def _list_with_timeout_of(call, seconds: float = 60):
    result: list = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"listing did not finish in {seconds} s (a cycle followed?)"
    return result[0]


def test_uploads_read_twice_by_the_browser_are_scored_once():
    """The web page's uploads carry no inode: a folder upload holding a link sends the file
    under both names with the same bytes, and slices.distinct_contents keeps the first."""
    from components.dicom.slices import NamedInput, distinct_contents

    uploads = [NamedInput("s/a.dcm", b"same"), NamedInput("s/link.dcm", b"same"),
               NamedInput("s/b.dcm", b"other"), NamedInput("s/path.dcm", "s/path.dcm")]
    assert [item.name for item in distinct_contents(uploads)] == ["s/a.dcm", "s/b.dcm",
                                                                  "s/path.dcm"]
