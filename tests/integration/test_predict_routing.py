"""`mspipe predict --model-config`: during a canary, whole studies follow the rollout's weight."""
from __future__ import annotations

import contextlib
import io
import json

from support.rollout_fixtures import FAST, common, initial_config, mspipe
from support.serving_fixtures import brain_like_frames, running_server, write_mr_dicom

from mspipe import main as cli


def predict(*args: str) -> tuple[int, object]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["predict", *args])
    return code, json.loads(out.getvalue())


def write_study(folder, study_uid: str) -> str:
    for number, frame in enumerate(brain_like_frames(3, seed=len(study_uid)), start=1):
        write_mr_dicom(folder / f"{number}.dcm", frame[None], instance_number=number,
                       study_uid=study_uid, series_uid=study_uid + ".1")
    return str(folder)


def test_studies_are_routed_by_the_rollout_weight(tmp_path, model_source):
    model_source.good(1)
    model_source.good(2, logit_shift=0.3)
    config = initial_config(tmp_path, model_source)
    studies = []
    for index in range(6):
        folder = tmp_path / f"study{index}"
        folder.mkdir()
        studies.append(write_study(folder, f"1.2.826.0.1.3680043.8.498.{100 + index}"))
    with running_server(config, **FAST) as server:
        target = ["--server", server.address, "--model-config", str(config), "--json"]
        code, _, err = mspipe("start", *common(server, config), "--version", "2", "--weight", "1")
        assert code == 0, err
        code, reports = predict(*studies, *target)
        assert code == 0 and len(reports) == len(studies)
        assert {report["model_version"] for report in reports} == {2}
        assert all(len(report["studies"]) == 1 for report in reports)

        code, _, err = mspipe("weight", *common(server, config), "0")
        assert code == 0, err
        code, reports = predict(*studies, *target)
        assert {report["model_version"] for report in reports} == {1}
        # An explicit label still wins over the routing.
        code, report = predict(studies[0], *target, "--label", "canary")
        assert report["model_version"] == 2
