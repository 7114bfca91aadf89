"""The light clients never load TensorFlow or TFX, not even transitively.

`mspipe predict`, every `mspipe rollout` verb and `mspipe web` run against a real local server
in a process where TensorFlow's runtime and TFX refuse to load (tests/support/light_client.py).
Each run reports every attempt with its import chain, so a failure names the module to fix.
A verb may fail for a business reason (an analysis that does not recommend promotion); it may
not fail, or succeed, by loading TensorFlow.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from support.rollout_fixtures import FAST, common
from serving.api.model_config import build_model_config, model_entry, write_model_config
from support.serving_fixtures import (MODEL_NAME, brain_like_frames, running_server, save_version,
                              write_mr_dicom)
from support.web_fixtures import get_json, post_files

LIGHT_CLIENT = Path(__file__).resolve().parents[1] / "support" / "light_client.py"
REPORT_PREFIX = "LIGHT-CLIENT-REPORT "
# Two busy shared cores make a p99 over a few requests noise: not what these tests look at.
LENIENT_LATENCY = ["--max-p99-latency-ratio", "100", "--latency-slack-ms", "10000"]


@dataclass
class ClientRun:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    report: dict | None

    def explain(self) -> str:
        return f"mspipe {' '.join(self.argv)} -> {self.returncode}\n{self.stdout}\n{self.stderr}"


def _client_run(argv, returncode: int, stdout: str, stderr: str) -> ClientRun:
    lines = stderr.splitlines()
    reports = [line[len(REPORT_PREFIX):] for line in lines if line.startswith(REPORT_PREFIX)]
    rest = "\n".join(line for line in lines if not line.startswith(REPORT_PREFIX))
    return ClientRun(tuple(argv), returncode, stdout, rest,
                     json.loads(reports[-1]) if reports else None)


def run_light(*argv: str, timeout_s: float = 180) -> ClientRun:
    result = subprocess.run([sys.executable, str(LIGHT_CLIENT), *argv], capture_output=True,
                            text=True, timeout=timeout_s)
    return _client_run(argv, result.returncode, result.stdout, result.stderr)


def assert_stayed_light(run: ClientRun) -> None:
    assert run.report is not None, "the process ended before reporting:\n" + run.explain()
    chains = "\n".join(f"--- {attempt['module']} was imported from:\n{attempt['stack']}"
                       for attempt in run.report["attempts"])
    assert not run.report["attempts"], f"mspipe {' '.join(run.argv)}\n{chains}"
    assert run.report["loaded"] == [], run.explain()


def write_labelled_studies(folder: Path, studies: int = 4) -> Path:
    """`studies` DICOM studies of two slices each, and their labels file (half positive)."""
    rows = ["study_uid,sclerosis"]
    for study in range(studies):
        uid = f"1.2.826.0.1.3680043.8.498.{300 + study}"
        for instance in (1, 2):
            write_mr_dicom(folder / f"study{study}" / f"{instance}.dcm",
                           brain_like_frames(1, seed=10 * study + instance),
                           instance_number=instance, study_uid=uid, series_uid=f"{uid}.1")
        rows.append(f"{uid},{study % 2}")
    labels = folder.parent / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return labels


@pytest.fixture(scope="module")
def local_deployment(tmp_path_factory):
    """A local server with versions 1 (stable) and 2 (on disk, not yet served), and studies."""
    root = tmp_path_factory.mktemp("light_clients")
    for version in (1, 2):
        save_version(root / MODEL_NAME, version)
    config = root / "models.config"
    write_model_config(config, build_model_config([model_entry(MODEL_NAME, root / MODEL_NAME,
                                                               versions=[1])]))
    hospital = root / "hospital"
    labels = write_labelled_studies(hospital)
    with running_server(config, **FAST) as server:
        yield SimpleNamespace(server=server, config=config, hospital=hospital, labels=labels)


@pytest.fixture(scope="module")
def rollout_runs(local_deployment) -> dict[str, ClientRun]:
    """Every rollout verb once, in an order where each has something to do."""
    shared = common(local_deployment.server, local_deployment.config)
    runs = {}
    for verb, *extra in (("start", "--version", "2", "--weight", "0.5"),
                         ("status", "--json"), ("weight", "0.25"),
                         ("analyze", "--data", str(local_deployment.hospital),
                          "--labels", str(local_deployment.labels), *LENIENT_LATENCY),
                         ("rollback",), ("start again", "--version", "2"), ("promote",)):
        runs[verb] = run_light("rollout", verb.split()[0], *shared, *extra)
    return runs


# analyze may recommend against promotion (exit 1): a business outcome, still a light client.
ROLLOUT_EXIT_CODES = {"start": {0}, "status": {0}, "weight": {0}, "analyze": {0, 1},
                      "rollback": {0}, "start again": {0}, "promote": {0}}


@pytest.mark.parametrize("verb", list(ROLLOUT_EXIT_CODES))
def test_rollout_verb_never_loads_tensorflow_or_tfx(rollout_runs, verb):
    run = rollout_runs[verb]
    assert_stayed_light(run)
    assert run.returncode in ROLLOUT_EXIT_CODES[verb], run.explain()


@pytest.mark.parametrize("routing", ["fixed", "routed by the rollout state"])
def test_predict_never_loads_tensorflow_or_tfx(local_deployment, routing):
    extra = [] if routing == "fixed" else ["--model-config", str(local_deployment.config)]
    run = run_light("predict", "--server", local_deployment.server.address, "--json", *extra,
                    str(local_deployment.hospital))
    assert_stayed_light(run)
    assert run.returncode == 0, run.explain()
    answer = json.loads(run.stdout)  # routed: one document per study
    documents = [answer] if routing == "fixed" else answer
    assert sum(len(document["studies"]) for document in documents) == 4, run.explain()


def test_web_never_loads_tensorflow_or_tfx(local_deployment):
    dicom = next(local_deployment.hospital.rglob("*.dcm"))
    process = subprocess.Popen(
        [sys.executable, str(LIGHT_CLIENT), "web", "--server", local_deployment.server.address,
         "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://\S+/", process.stdout.readline() or "")
        if url:
            health_status, _ = get_json(url.group(0) + "healthz")
            status, answer = post_files(url.group(0), [("slice.dcm", dicom.read_bytes())])
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    run = _client_run(("web",), process.returncode, out, err)
    assert_stayed_light(run)
    assert url is not None and process.returncode == 0, run.explain()
    assert health_status == 200 and status == 200, answer
    assert answer["studies"][0]["slices"][0]["name"] == "slice.dcm"
