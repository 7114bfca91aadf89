"""What the generator wrote, and what a correct ingestion must make of it.

Kept in memory (returned by `generate_dataset`), never written beside the dataset: it holds raw
UIDs and paths, and anything in the export folder would itself be ingested. Reject counts use
the reason codes of components/dicom/preprocessing.py and count what the ingestion ledger counts:
one per file, except `non_axial`, which is one per rejected frame (a 3-plane localizer is one
file with two non-axial frames).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

# reason codes shared with components/dicom/preprocessing.py (REJECT_REASONS)
NOT_DICOM = "not_dicom"
UNSUPPORTED_SOP_CLASS = "unsupported_sop_class"
TRUNCATED = "truncated"
NON_AXIAL = "non_axial"
UNLABELED_STUDY = "unlabeled_study"


@dataclass(frozen=True)
class FileRecord:
    """One file under a scanner folder."""

    path: str                       # relative to the dataset root, '/'-separated
    study_uid: str
    kind: str                       # axial | sagittal | coronal | localizer | report | capture
    #                                 | truncated | not_dicom
    transfer_syntax: str | None     # None for non-DICOM files
    frames: int                     # images in the file (0 without pixel data)
    reject_reason: str | None       # what the ingestion must say about it, None = kept
    rejected_frames: int            # how many ledger entries that reason produces
    monochrome1: bool = False
    rescaled: bool = False          # modality LUT other than slope 1 / intercept 0
    multiframe: bool = False


@dataclass(frozen=True)
class StudyRecord:
    label: int | None               # None: the study is missing from the labels files
    scanner: str
    axial_slices: int               # axial frames the ingestion should keep (when labelled)
    files: int


@dataclass(frozen=True)
class Manifest:
    out_dir: Path
    seed: int
    studies: dict[str, StudyRecord]            # labelled studies that have files
    unlabeled_studies: dict[str, StudyRecord]  # folders whose UID is not in the labels
    empty_labelled_studies: tuple[str, ...]    # in the labels, no files anywhere
    files: tuple[FileRecord, ...]
    planted_strings: tuple[str, ...]           # patient strings actually written
    labels_csv: Path
    labels_xlsx: Path

    @property
    def total_files(self) -> int:
        return len(self.files)

    @property
    def expected_slices(self) -> int:
        """Axial slices of labelled studies: the examples a correct ingestion writes."""
        return sum(study.axial_slices for study in self.studies.values())

    @property
    def expected_rejects(self) -> dict[str, int]:
        """Reason code -> ledger entries (files; frames for non_axial)."""
        counts: Counter[str] = Counter()
        for record in self.files:
            if record.reject_reason:
                counts[record.reject_reason] += record.rejected_frames
        return dict(sorted(counts.items()))

    def reject_files(self, reason: str) -> tuple[str, ...]:
        return tuple(r.path for r in self.files if r.reject_reason == reason)

    @property
    def files_by_transfer_syntax(self) -> dict[str, int]:
        counts = Counter(r.transfer_syntax for r in self.files if r.transfer_syntax)
        return dict(sorted(counts.items()))

    @property
    def label_counts(self) -> dict[int, int]:
        counts = Counter(study.label for study in self.studies.values())
        return {0: counts.get(0, 0), 1: counts.get(1, 0)}

    def summary(self) -> str:
        """Counts only (no UIDs, no paths): safe to print."""
        labels = self.label_counts
        scanners = sorted({study.scanner for study in self.studies.values()})
        rejects = " ".join(f"{k}={v}" for k, v in self.expected_rejects.items()) or "none"
        return "\n".join([
            f"studies: {len(self.studies)} labelled ({labels[1]} MS, {labels[0]} control) "
            f"on {len(scanners)} scanners ({', '.join(scanners)})",
            f"files: {self.total_files}; axial slices to keep: {self.expected_slices}",
            f"planted rejects: {rejects}",
            f"unlabeled study folders: {len(self.unlabeled_studies)}; "
            f"labelled studies without files: {len(self.empty_labelled_studies)}",
        ])

    def to_json(self) -> dict:
        """Plain data for `mspipe synth --manifest` (benchmarks and scripts outside Python)."""
        return {
            "seed": self.seed,
            "studies": {uid: asdict(study) for uid, study in self.studies.items()},
            "unlabeled_studies": {uid: asdict(s) for uid, s in self.unlabeled_studies.items()},
            "empty_labelled_studies": list(self.empty_labelled_studies),
            "total_files": self.total_files,
            "expected_slices": self.expected_slices,
            "expected_rejects": self.expected_rejects,
            "files_by_transfer_syntax": self.files_by_transfer_syntax,
            "files": [asdict(record) for record in self.files],
        }
