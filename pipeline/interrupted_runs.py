"""A killed local run leaves nothing that looks like output, and no execution RUNNING forever.

LocalDagRunner registers each component's execution as RUNNING in ML Metadata, creates its
output folders, runs the executor and then publishes. A run killed in between (kill -9, OOM,
a closed laptop) never gets to the end: TFX 1.16 has no recovery for it (the launcher reuses a
previous execution only within the same pipeline run, `_register_or_reuse_execution`, and every
LocalDagRunner run is a new pipeline run), so the execution would stay RUNNING and its partial
folders (Beam temp files, staged examples) would stay forever beside the real outputs.

`exclusive_local_run` wraps a local run:
1. It takes an exclusive lock on `<output folder>/.run.lock` (flock: the kernel releases it when
   the holder dies, however it dies). A second run on the same folder while one is running is
   refused with one line (`RunInProgressError`) instead of interleaving with it.
2. Holding the lock, every execution of this pipeline still NEW or RUNNING in MLMD belongs to a
   run that died: it is marked CANCELED (custom property `interrupted`), and its folders are
   deleted: its outputs (`<pipeline_root>/<node>/<output>/<execution id>`), its executor temp
   and output folder (`.system/executor_execution/<id>`) and the node's stateful working
   folders (LocalDagRunner removes its own after success and records no name for them).
Nothing of a finished execution is touched, so caching and lineage are unchanged.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from absl import logging

LOCK_FILE_NAME = ".run.lock"
INTERRUPTED_PROPERTY = "interrupted"
INTERRUPTED_NOTE = "the run holding this execution ended without finishing it (killed)"


class RunInProgressError(RuntimeError):
    """Another run holds the output folder."""


@contextlib.contextmanager
def exclusive_local_run(output_dir: str, metadata_path: str, pipeline_name: str,
                        pipeline_root: str) -> Iterator[int]:
    """Holds the output folder's lock for the run; yields how many interrupted executions
    were cleaned up first. Remote output folders (gs://...) are not locked: their runs use a
    remote orchestrator and metadata store, which track their own executions."""
    if "://" in output_dir:
        yield 0
        return
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, LOCK_FILE_NAME), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgressError(f"another run is using the output folder {output_dir}; "
                                     "wait for it to finish or choose another --out") from None
        try:
            yield cancel_interrupted_executions(metadata_path, pipeline_name, pipeline_root)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cancel_interrupted_executions(metadata_path: str, pipeline_name: str,
                                  pipeline_root: str) -> int:
    """Marks this pipeline's NEW/RUNNING executions CANCELED and deletes their folders.
    Only call it while holding the lock: then no live run owns such an execution."""
    if not os.path.exists(metadata_path):
        return 0
    from ml_metadata.proto import metadata_store_pb2
    from tfx.dsl.io import fileio
    from tfx.orchestration import metadata

    unfinished = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
    connection = metadata.sqlite_metadata_connection_config(metadata_path)
    with metadata.Metadata(connection) as handle:
        store = handle.store
        context = store.get_context_by_type_and_name("pipeline", pipeline_name)
        if context is None:
            return 0
        stale = [execution for execution in store.get_executions_by_context(context.id)
                 if execution.last_known_state in unfinished]
        node_type = store.get_context_type("node").id
        for execution in stale:
            for node_context in store.get_contexts_by_execution(execution.id):
                if node_context.type_id == node_type:
                    node_id = node_context.name[len(pipeline_name) + 1:]
                    for folder in _execution_folders(os.path.join(pipeline_root, node_id),
                                                     execution):
                        if fileio.exists(folder):
                            fileio.rmtree(folder)
            execution.last_known_state = metadata_store_pb2.Execution.CANCELED
            execution.custom_properties[INTERRUPTED_PROPERTY].string_value = INTERRUPTED_NOTE
        if stale:
            store.put_executions(stale)
            logging.warning("%d execution(s) of an earlier run that was killed are marked "
                            "CANCELED and their partial output folders deleted", len(stale))
    return len(stale)


def _execution_folders(node_dir: str, execution) -> list[str]:
    """Where LocalDagRunner puts an execution's files (tfx.orchestration.portable.outputs_utils:
    <node>/<output key>/<id>, <node>/.system/executor_execution/<id>, and the node's
    stateful working folders)."""
    from tfx.dsl.io import fileio

    execution_id = str(execution.id)
    folders = [os.path.join(node_dir, ".system", "executor_execution", execution_id)]
    if fileio.isdir(node_dir):
        folders += [os.path.join(node_dir, key.rstrip("/"), execution_id)
                    for key in sorted(fileio.listdir(node_dir)) if key.rstrip("/") != ".system"]
    # LocalDagRunner does not record which stateful folder (a random name) an execution got,
    # and removes its own after success: under the lock, every one left is a dead run's.
    stateful = os.path.join(node_dir, ".system", "stateful_working_dir")
    if fileio.isdir(stateful):
        folders += [os.path.join(stateful, name.rstrip("/")) for name in fileio.listdir(stateful)]
    return folders
