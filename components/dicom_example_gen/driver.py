"""Driver: TFX's file-based ExampleGen driver with a fingerprint that sees the whole folder tree.

The fingerprint is the cache key of the input: LocalDagRunner compiles DRIVER_CLASS into the
pipeline IR and runs it before every execution.

TFX fingerprints the files matching the input pattern ('*'), which for scanner/study/series
folders is only the scanner folders: a new study would not invalidate the cache. This
fingerprint covers every file below input_base and the labels file. It holds counts and a
digest, never a path (the folder names are raw UIDs and the fingerprint is stored in MLMD).
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Dict

from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.io import fileio
from tfx.orchestration import data_types
from tfx.types import standard_component_specs

from components.dicom_example_gen import discovery
from components.dicom_example_gen.executor import LABELS_PATH_KEY


def tree_fingerprint(input_base: str, labels_path: str) -> str:
    """Digest of (relative path, size, mtime) of every input file and (path, reason) of every
    skipped entry (discovery.py: never hangs or raises on links, names or permissions), so
    fixing a skipped entry invalidates the cache too."""
    digest = hashlib.sha256()
    total_bytes = 0
    listing = (discovery.list_tree(input_base, labels_path) if fileio.isdir(input_base)
               else discovery.Listing(()))
    for found in listing.files:
        size, mtime = _size_and_mtime(input_base, found)
        total_bytes += max(size, 0)
        digest.update(f"{found.relative_path}\0{size}\0{mtime}\n".encode("utf-8"))
    for entry in listing.skipped:
        digest.update(f"{entry.relative_path}\0{entry.reason}\n".encode("utf-8"))
    files = listing.files
    labels = "missing"
    if labels_path and fileio.exists(labels_path):
        stat = fileio.stat(labels_path)
        labels = f"{stat.length}:{stat.mtime_nsec}"
    return (f"files:{len(files)},total_bytes:{total_bytes},labels:{labels},"
            f"tree_sha256:{digest.hexdigest()}")


def _size_and_mtime(input_base: str, found: discovery.FoundFile) -> tuple[int, int]:
    """From the walk's stat on local roots; fileio.stat on remote ones (-1 when it fails:
    the reader will record the file as unreadable)."""
    if found.size is not None and found.mtime_ns is not None:
        return found.size, found.mtime_ns
    try:
        stat = fileio.stat(os.path.join(input_base, found.relative_path))
    except Exception:  # noqa: BLE001 -- the message names the path; the executor reports it
        return -1, -1
    return stat.length, stat.mtime_nsec


class DicomDriver(example_gen_driver.FileBasedDriver):
    """Resolves span/version as TFX does, then replaces the fingerprint with the tree's."""

    def resolve_exec_properties(self, exec_properties: Dict[str, Any],
                                pipeline_info: data_types.PipelineInfo,
                                component_info: data_types.ComponentInfo) -> Dict[str, Any]:
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info,
                                                          component_info)
        exec_properties[example_gen_utils.FINGERPRINT_PROPERTY_NAME] = tree_fingerprint(
            exec_properties[standard_component_specs.INPUT_BASE_KEY],
            exec_properties.get(LABELS_PATH_KEY, ""))
        return exec_properties
