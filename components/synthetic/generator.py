"""Generate a synthetic hospital export: scanner folders of DICOM studies plus labels files.

It stands in for the real dataset everywhere (demo, tests, benchmarks), so it carries the real
data's awkwardness on purpose: six transfer syntaxes, matrices from 192 to 768 (some not
square), MONOCHROME1, rescaled and signed pixels, Enhanced MR multi-frame files with per-frame
geometry and rescale, sagittal/coronal series and 3-plane localizers beside the axial FLAIRs,
and exactly countable defects (an SR document, a secondary capture, a truncated file, non-DICOM
files, a labelled study without files, an unlabeled study). Every file carries fake patient
data from `PLANTED_PATIENT_STRINGS`, so leak tests have something to find.

Expected reject reasons (see manifest.py): the SR document and the secondary capture are
`unsupported_sop_class` (the preprocessing checks the SOP class before looking for pixel data,
so the SR is not `no_pixel_data`); the cut file is `truncated`; Thumbs.db and README.txt are
`not_dicom`; sagittal/coronal frames are `non_axial`; every file of the unlabeled study is
`unlabeled_study`. The labels files sit at the root, beside the scanner folders.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from components.synthetic.ground_truth import clear_ground_truth
from components.synthetic.labels import LABELS_CSV, LABELS_XLSX, write_labels
from components.synthetic.manifest import FileRecord, Manifest, StudyRecord
from components.synthetic.plan import (
    AXIAL,
    StudyPlan,
    new_uid,
    plan_studies,
    plan_unlabeled_study,
)
from components.synthetic.settings import DEFAULT_SCANNERS, SynthSettings
from components.synthetic.study_writer import (
    CAPTURE,
    README,
    REPORT,
    THUMBS_DB,
    TRUNCATED_FILE,
    write_study,
)


def generate_dataset(out_dir: str | Path, *, studies: int = 12, seed: int = 0,
                     slices_per_series: int = 8, overwrite: bool = False,
                     **settings_overrides: object) -> Manifest:
    """Write a synthetic export into `out_dir` and return its manifest (in memory only).

    `settings_overrides` are further `SynthSettings` fields (e.g. `plant_defects=False`,
    `non_axial_slices=2`). `out_dir` must be missing or empty unless `overwrite` is set, in
    which case it is deleted first: mixing two datasets would silently corrupt both.
    """
    settings = SynthSettings(studies=studies, seed=seed, slices_per_series=slices_per_series,
                             **settings_overrides)  # type: ignore[arg-type]
    return generate_from_settings(out_dir, settings, overwrite=overwrite)


def generate_from_settings(out_dir: str | Path, settings: SynthSettings, *,
                           overwrite: bool = False) -> Manifest:
    """`generate_dataset` for callers that already hold a `SynthSettings`."""
    root = _prepare_out_dir(Path(out_dir), settings, overwrite)
    rng = np.random.default_rng(settings.seed)
    labelled = plan_studies(settings, rng)
    unlabeled: list[StudyPlan] = []
    empty_uids: tuple[str, ...] = ()
    defects: dict[str, set[str]] = {}
    if settings.plant_defects:
        unlabeled = [plan_unlabeled_study(settings, rng, settings.studies)]
        empty_uids = (new_uid(rng),)
        defects = _place_defects(labelled, rng)
    records: list[FileRecord] = []
    for study in labelled + unlabeled:
        records += write_study(root, study, settings,
                               frozenset(defects.get(study.study_uid, ())))
    rows = [(s.study_uid, int(s.label)) for s in labelled if s.label is not None]
    rows += [(uid, 0) for uid in empty_uids]
    rows = [rows[int(i)] for i in rng.permutation(len(rows))]   # hospitals do not sort
    labels_csv, labels_xlsx = write_labels(root, rows)
    return Manifest(
        out_dir=root,
        seed=settings.seed,
        studies={s.study_uid: _study_record(s, records) for s in labelled},
        unlabeled_studies={s.study_uid: _study_record(s, records) for s in unlabeled},
        empty_labelled_studies=empty_uids,
        files=tuple(records),
        planted_strings=_planted_strings(labelled + unlabeled),
        labels_csv=labels_csv,
        labels_xlsx=labels_xlsx,
    )


def _prepare_out_dir(root: Path, settings: SynthSettings, overwrite: bool) -> Path:
    """An empty output folder. `overwrite` deletes only what looks like an earlier synthetic
    export (scanner folders and labels files): a mistyped path must not cost anyone data."""
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"synthetic dataset output {root} exists and is not a folder")
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"synthetic dataset output {root} is not empty; choose an empty folder or "
                "pass overwrite (it deletes an earlier synthetic export there first)")
        ours = {LABELS_CSV, LABELS_XLSX} | {s.folder for s in DEFAULT_SCANNERS + settings.scanners}
        foreign = sorted(p.name for p in root.iterdir() if p.name not in ours)
        if foreign:
            raise FileExistsError(
                f"synthetic dataset output {root} holds {len(foreign)} entries that a synthetic "
                f"export does not have (e.g. {foreign[0]!r}); not deleting it")
        shutil.rmtree(root)
    clear_ground_truth(root)
    root.mkdir(parents=True, exist_ok=True)
    return root


def _place_defects(studies: list[StudyPlan], rng: np.random.Generator) -> dict[str, set[str]]:
    """Pick the labelled studies that receive each defect (one of each kind).
    The truncated file joins a series of single-frame axial files, like an interrupted copy."""
    placed: dict[str, set[str]] = {}
    single_frame = [s for s in studies
                    if not next(x for x in s.series if x.kind == AXIAL).multiframe]
    for defect, pool in ((REPORT, studies), (CAPTURE, studies), (TRUNCATED_FILE, single_frame),
                         (THUMBS_DB, studies), (README, studies)):
        study = pool[int(rng.integers(len(pool)))]
        placed.setdefault(study.study_uid, set()).add(defect)
    return placed


def _study_record(study: StudyPlan, records: list[FileRecord]) -> StudyRecord:
    files = sum(1 for r in records if r.study_uid == study.study_uid)
    return StudyRecord(study.label, study.scanner.folder, study.axial_frames(), files)


def _planted_strings(studies: list[StudyPlan]) -> tuple[str, ...]:
    strings: list[str] = []
    for study in studies:
        patient = study.patient
        for value in (patient.name, patient.patient_id, patient.birth_date, patient.accession,
                      patient.referring_physician, patient.study_date,
                      patient.study_description, study.institution):
            if value not in strings:
                strings.append(value)
    return tuple(strings)
