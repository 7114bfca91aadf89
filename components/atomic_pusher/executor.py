"""Pusher executor that publishes `<base>/<N>/` atomically with N = previous version + 1.

TFX's stock Pusher names versions by Unix time (two pushes in one second collide and the second
is silently skipped) and copies straight into the final folder. A model server polling the base
path must never load a half-copied version, so we copy into a hidden sibling folder and rename
it into place: a rename within one filesystem is atomic, and both TF Serving and our local server
ignore folders whose names are not integers.
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


def publish_version(model_path: str, base_directory: str) -> int:
    """Copies a SavedModel to `<base>/<next>/` so that it appears whole or not at all."""
    fileio.makedirs(base_directory)
    version = (existing_versions(base_directory) or [0])[-1] + 1
    staging = os.path.join(base_directory, f".staging-{version}-{uuid.uuid4().hex[:8]}")
    # saved_model.pb last: on filesystems without atomic rename (object stores) readers that
    # wait for saved_model.pb still see a complete copy.
    io_utils.copy_dir(model_path, staging, deny_regex_patterns=[r"saved_model\.pb"])
    io_utils.copy_file(os.path.join(model_path, "saved_model.pb"), os.path.join(staging, "saved_model.pb"))
    final = os.path.join(base_directory, str(version))
    fileio.rename(staging, final, overwrite=False)
    return version


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
