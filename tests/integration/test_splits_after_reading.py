"""Splits are assigned among the studies that gave usable slices (issue 12: real-scanner and
pydicom test corpora gave exit 0 with an empty eval split, because eval was given the studies
whose files were all rejected).

The export has the corpora's shape: several labelled studies have no usable slice (every file
cut short: `truncated`, with a readable header naming its study). Which studies are broken is
chosen against the labels-only assignment (splits.assign_splits, what the old ingestion used):
exactly those it would have put in eval. Runs `mspipe ingest` in-process on the in-memory runner.
"""
from __future__ import annotations

import argparse
import json

import pytest

from components import features
from components.dicom_example_gen import splits
from components.synthetic import generate_dataset

SALT = "test-salt"
IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def _break_studies(dataset, study_uids: set[str]) -> None:
    """Every file of these studies keeps its header and loses half its pixel data."""
    for record in dataset.files:
        if record.study_uid in study_uids:
            path = dataset.out_dir / record.path
            data = path.read_bytes()
            path.write_bytes(data[: len(data) - max(1, len(data) // 4)])


def _labels_only_eval(dataset) -> set[str]:
    by_hash = {features.hash_uid(uid, SALT): uid for uid in dataset.studies}
    labels = {study_hash: dataset.studies[uid].label for study_hash, uid in by_hash.items()}
    assignment = splits.assign_splits(labels, splits.DEFAULT_SPLIT_RATIOS)
    return {by_hash[study] for study, split in assignment.items() if split == splits.EVAL}


def _ingest(dataset, out, capfd):
    from mspipe.commands import ingest as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--data", str(dataset.out_dir), "--labels", str(dataset.labels_csv),
                              "--out", str(out), "--json", "--image-size", "32", "--salt", SALT]
                             + [f"--beam-arg={arg}" for arg in IN_MEMORY])
    capfd.readouterr()
    code = cli.run(args)
    return code, capfd.readouterr().out


@pytest.mark.slow
def test_eval_gets_studies_with_slices_when_the_labels_only_eval_studies_are_unusable(
        tmp_path, capfd):
    dataset = generate_dataset(tmp_path / "data", studies=8, slices_per_series=2,
                               plant_defects=False)
    unusable = _labels_only_eval(dataset)
    assert len(unusable) == 2  # one study of each class
    _break_studies(dataset, unusable)
    code, out = _ingest(dataset, tmp_path / "out", capfd)
    assert code == 0
    summary = json.loads(out)  # the JSON summary alone on stdout, under pytest's fd capture
    assert summary["studies"] == {"train": 4, "eval": 2}
    assert summary["examples"]["eval"] > 0 and summary["examples"]["train"] > 0
    assert summary["labelled_studies_without_slices"] == 2
    assert summary["rejects"]["truncated"] > 0


@pytest.mark.slow
def test_a_split_no_usable_study_can_reach_fails_with_the_counts(tmp_path, capfd):
    from mspipe.errors import CommandError

    dataset = generate_dataset(tmp_path / "data", studies=4, slices_per_series=2,
                               plant_defects=False)
    unusable = set(sorted(dataset.studies, key=lambda uid: (dataset.studies[uid].label, uid))[1::2])
    _break_studies(dataset, unusable)  # one usable study per class: none left for eval
    with pytest.raises(CommandError) as raised:
        _ingest(dataset, tmp_path / "out", capfd)
    assert str(raised.value) == (
        "split eval got no study: studies per split train 2, eval 0; only 2 of 4 labelled "
        "studies gave a usable slice (see the ledger); add studies or ask for fewer splits "
        "(--splits)")
