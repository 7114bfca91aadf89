"""Pusher executor that publishes `<base>/<N>/` atomically with N = previous version + 1.

TFX's stock Pusher names versions by Unix time (two pushes in one second collide and the second
is silently skipped) and copies straight into the final folder. A model server polling the base
path must never load a half-copied version, so we copy into a hidden sibling folder and rename
it into place: a rename within one filesystem is atomic, and both TF Serving and our local server
ignore folders whose names are not integers.

The rename is also the claim of the number: it fails when `<base>/<N>/` already exists (a
non-empty folder is never replaced), so of two pushes that both chose N, one wins and the other
moves on to the next free number. No version is taken twice and none is overwritten. On object
stores (gs://, s3://) a rename is a copy and the existence check is not atomic; run one pusher
per base path there.
"""
from __future__ import annotations

import os
import re
import uuid
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

_VERSION_DIR = re.compile(r"^\d+$")


def existing_versions(base_directory: str) -> list[int]:
    """Integer version folders under a TF Serving base path (others are ignored, as TF Serving does)."""
    if not fileio.exists(base_directory):
        return []
    names = (name.rstrip("/") for name in fileio.listdir(base_directory))
    return sorted(int(name) for name in names if _VERSION_DIR.match(name))


def publish_version(model_path: str, base_directory: str, *, max_attempts: int = 100) -> int:
    """Copies a SavedModel to `<base>/<next free number>/`, whole or not at all; returns N."""
    fileio.makedirs(base_directory)
    staging = os.path.join(base_directory, f".staging-{uuid.uuid4().hex}")
    try:
        # saved_model.pb last: on filesystems without atomic rename (object stores) readers
        # that wait for saved_model.pb still see a complete copy.
        io_utils.copy_dir(model_path, staging, deny_regex_patterns=[r"saved_model\.pb"])
        io_utils.copy_file(os.path.join(model_path, "saved_model.pb"),
                           os.path.join(staging, "saved_model.pb"))
        version = _next_version(base_directory, 0)
        for _ in range(max_attempts):
            if _claim(staging, os.path.join(base_directory, str(version))):
                return version
            version = _next_version(base_directory, version)
        raise RuntimeError(f"no free version number under {base_directory} after "
                           f"{max_attempts} attempts (too many concurrent pushes?)")
    finally:
        if fileio.exists(staging):
            fileio.rmtree(staging)


def _next_version(base_directory: str, taken: int) -> int:
    """One past the newest version on disk, and past `taken` (a number lost to another push)."""
    return max([taken, *existing_versions(base_directory)]) + 1


def _claim(staging: str, final: str) -> bool:
    """Renames staging to final; False when another push already holds final."""
    try:
        fileio.rename(staging, final, overwrite=False)
        return True
    except Exception:  # pylint: disable=broad-except  # the filesystem's own error types vary
        if fileio.exists(final) and fileio.exists(staging):
            return False  # lost the race for this number: the other push's copy is there
        raise


class Executor(tfx_pusher_executor.Executor):
    """Same inputs, outputs and blessing check as TFX's Pusher; only the publishing differs."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            logging.warning("Model NOT pushed: the Evaluator did not bless it.")
            self._MarkNotPushed(model_push)
            return
        push_destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], push_destination)
        if push_destination.WhichOneof("destination") != "filesystem":
            raise ValueError("push_destination: only `filesystem` is supported by this Pusher")
        base_directory = push_destination.filesystem.base_directory
        model_path = self.GetModelPath(input_dict)
        version = publish_version(model_path, base_directory)
        io_utils.copy_dir(model_path, model_push.uri)  # archive copy, as TFX's Pusher does
        self._MarkPushed(model_push, pushed_destination=os.path.join(base_directory, str(version)),
                         pushed_version=str(version))
        logging.info("Model pushed as version %d.", version)
