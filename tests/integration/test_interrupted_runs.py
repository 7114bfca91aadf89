"""A killed run leaves nothing that looks like output (issue 12, the kill -9 row).

`mspipe ingest` is killed with SIGKILL (its whole process group: the driver and Beam's worker
processes) while DicomExampleGen's Beam job is writing, then the same command runs again. The
rerun must finish, mark the killed execution CANCELED in ML Metadata (not RUNNING forever) and
delete its partial folders (Beam temp files, staged examples), and print its JSON summary on a
piped stdout. A second run while one holds the output folder is refused in one line.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from components.synthetic import generate_dataset
from pipeline import interrupted_runs
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
MSPIPE = [sys.executable, "-m", "mspipe"]
SALT = "test-salt"


def _ingest_command(dataset, out: Path) -> list[str]:
    return MSPIPE + ["ingest", "--data", str(dataset.out_dir), "--labels", str(dataset.labels_csv),
                     "--out", str(out), "--image-size", "32", "--salt", SALT, "--json"]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _executions(out: Path) -> list:
    from ml_metadata.proto import metadata_store_pb2  # noqa: F401 -- states by name below
    from tfx.orchestration import metadata

    connection = metadata.sqlite_metadata_connection_config(str(out / "metadata.sqlite"))
    with metadata.Metadata(connection) as handle:
        return list(handle.store.get_executions())


def _beam_temp_folders(out: Path) -> list[Path]:
    return [path for path in out.rglob("*") if path.name.startswith("beam-temp")]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_9_during_ingest_then_rerun_cleans_up(tmp_path):
    from ml_metadata.proto import metadata_store_pb2

    dataset = generate_dataset(tmp_path / "data", studies=4, slices_per_series=3,
                               plant_defects=False)
    out = tmp_path / "out"
    killed = subprocess.Popen(_ingest_command(dataset, out), cwd=REPO, env=_environment(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        # Beam has started writing: its temp folders exist under the execution's outputs
        wait_until(lambda: killed.poll() is not None or _beam_temp_folders(out),
                   "Beam temp files of the ingest run", timeout_s=300)
        assert killed.poll() is None, "the run ended before it could be killed"
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    running = [e for e in _executions(out)
               if e.last_known_state == metadata_store_pb2.Execution.RUNNING]
    assert len(running) == 1 and _beam_temp_folders(out)  # what the issue found
    killed_id = str(running[0].id)
    node_dir = out / "pipeline_root" / "DicomExampleGen"
    partial = [path for path in node_dir.rglob(killed_id) if path.is_dir()]
    assert partial, "the killed execution left no folder to clean (test precondition)"

    rerun = subprocess.run(_ingest_command(dataset, out), cwd=REPO, env=_environment(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    assert rerun.returncode == 0, rerun.stderr.decode(errors="replace")[-3000:]
    summary = json.loads(rerun.stdout)  # stdout is a pipe: the JSON summary alone
    assert sum(summary["examples"].values()) == dataset.expected_slices
    states = {str(e.id): e for e in _executions(out)}
    assert states[killed_id].last_known_state == metadata_store_pb2.Execution.CANCELED
    assert interrupted_runs.INTERRUPTED_PROPERTY in states[killed_id].custom_properties
    assert not [e for e in states.values() if e.last_known_state in (
        metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)]
    assert not any(path.exists() for path in partial)
    assert not _beam_temp_folders(out)
    assert not list((node_dir / ".system" / "stateful_working_dir").iterdir())
    assert "marked CANCELED" in rerun.stderr.decode(errors="replace")


def test_a_second_run_on_a_held_output_folder_is_refused(tmp_path):
    (tmp_path / interrupted_runs.LOCK_FILE_NAME).touch()
    with open(tmp_path / interrupted_runs.LOCK_FILE_NAME) as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a live run holds it
        with pytest.raises(interrupted_runs.RunInProgressError) as raised:
            with interrupted_runs.exclusive_local_run(str(tmp_path), str(tmp_path / "m.sqlite"),
                                                      "p", str(tmp_path / "root")):
                pass
    assert str(raised.value) == (f"another run is using the output folder {tmp_path}; "
                                 "wait for it to finish or choose another --out")
    with interrupted_runs.exclusive_local_run(str(tmp_path), str(tmp_path / "m.sqlite"), "p",
                                              str(tmp_path / "root")) as cleaned:
        assert cleaned == 0  # released: the next run gets it; no metadata yet
