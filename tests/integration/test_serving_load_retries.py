"""A version copied file by file (saved_model.pb before variables/, the order rsync uses) is
served once the copy completes, through TF Serving's load retries (--max_num_load_retries,
--load_retry_interval_micros); without retries it stays END with its error, as TF Serving.
The status a version reports is always its latest attempt's."""
from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from pathlib import Path

import grpc
import pytest

from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.client.model_client import ModelClient
from support import waiting
from support.serving_fixtures import MODEL_NAME, random_images, running_server, save_version

FAST = {"poll_seconds": 0.2}  # base paths only: models.config is read once, as TF Serving
# A load with retries takes its time on 2 busy cores.
wait_until = functools.partial(waiting.wait_until, timeout_s=60.0)




def status_of(client: ModelClient, version: int):
    return {s.version: s for s in client.model_status()}.get(version)


@pytest.fixture(scope="module")
def source_model(tmp_path_factory) -> Path:
    """A complete SavedModel (version 2's files), to copy file by file."""
    return save_version(tmp_path_factory.mktemp("source"), 2)


@pytest.fixture
def base(tmp_path) -> Path:
    """base_path with version 1 served, and its models.config (all versions)."""
    save_version(tmp_path / MODEL_NAME, 1)
    write_model_config(tmp_path / "models.config", build_model_config(
        [model_entry(MODEL_NAME, tmp_path / MODEL_NAME)]))
    return tmp_path / MODEL_NAME


def copy_graph_first(source: Path, target: Path) -> None:
    """What rsync writes first: saved_model.pb (and small files), not yet variables/."""
    target.mkdir()
    for item in source.iterdir():
        if item.is_file():
            shutil.copy2(item, target / item.name)
        elif item.name != "variables":
            shutil.copytree(item, target / item.name)


def copy_variables(source: Path, target: Path) -> None:
    shutil.copytree(source / "variables", target / "variables")


def first_attempt_failed(caplog, version: int) -> bool:
    needle = f"Loading servable: {{name: {MODEL_NAME} version: {version}}} failed"
    return any(needle in record.getMessage() for record in caplog.records)


def test_half_copied_version_loads_once_its_variables_arrive(base, source_model, caplog):
    caplog.set_level(logging.INFO, logger="serving.server.model_manager")
    config = base.parent / "models.config"
    with running_server(config, max_num_load_retries=50, load_retry_interval_micros=200_000,
                        **FAST) as server, ModelClient(server.address) as client:
        copy_graph_first(source_model, base / "2")
        wait_until(lambda: first_attempt_failed(caplog, 2), "a failed first load of version 2")
        status = status_of(client, 2)
        assert status.state == "LOADING" and not status.error_message  # retrying, no stale error
        copy_variables(source_model, base / "2")
        wait_until(lambda: status_of(client, 2).state == "AVAILABLE", "version 2 served")
        assert status_of(client, 2).error_code == grpc.StatusCode.OK.value[0]
        assert client.predict_tensors(random_images(2)).model_version == 2
        assert any("Retrying of Loading servable" in r.getMessage() for r in caplog.records)


def test_without_retries_a_half_copied_version_stays_end(base, source_model):
    config = base.parent / "models.config"
    with running_server(config, max_num_load_retries=0, **FAST) as server, \
            ModelClient(server.address) as client:
        copy_graph_first(source_model, base / "2")
        wait_until(lambda: getattr(status_of(client, 2), "state", None) == "END",
                   "version 2 failed")
        failed = status_of(client, 2)
        assert failed.error_code != grpc.StatusCode.OK.value[0]
        assert "variables" in failed.error_message
        copy_variables(source_model, base / "2")
        time.sleep(2.0)  # ten poll periods: TF Serving does not look at it again
        assert status_of(client, 2) == failed
        assert client.predict_tensors(random_images(1)).model_version == 1


def test_reported_error_is_the_latest_attempts(base, source_model):
    """A broken graph fails with one error; rewritten (our mtime extension re-attempts it)
    without variables it fails with another, and the status shows that one, not the first;
    complete, it serves with no error left behind."""
    config = base.parent / "models.config"
    with running_server(config, max_num_load_retries=0, **FAST) as server, \
            ModelClient(server.address) as client:
        (base / "2").mkdir()
        (base / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
        wait_until(lambda: getattr(status_of(client, 2), "state", None) == "END", "bad graph")
        first = status_of(client, 2).error_message
        shutil.copy2(source_model / "saved_model.pb", base / "2" / "saved_model.pb")
        os.utime(base / "2" / "saved_model.pb")  # a new copy: a new mtime
        wait_until(lambda: status_of(client, 2).error_message not in ("", first),
                   "the second attempt's error")
        assert "variables" in status_of(client, 2).error_message
        copy_variables(source_model, base / "2")
        os.utime(base / "2" / "saved_model.pb", (time.time() + 5, time.time() + 5))
        wait_until(lambda: status_of(client, 2).state == "AVAILABLE", "version 2 served")
        assert status_of(client, 2).error_message == ""
