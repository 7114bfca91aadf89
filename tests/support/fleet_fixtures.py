"""A fleet of local model server replicas for tests/e2e/test_fleet.py.

Each replica is a `mspipe serve` process started with exactly the demo's argument list
(mspipe/demo.py serve_arguments: the shared models.config, polled every few seconds, labels
allowed at startup), so it can be killed with SIGKILL and restarted as a deployment would.
The versions they serve are the models the real pipeline pushed (tests/conftest.py's session
runs), copied as version folders into a base path this fleet owns; the broken candidates are
the pushed model with NaN outputs, and a contract model whose input is renamed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from components import contract
from mspipe.demo import serve_arguments
from serving.api.errors import ServingError
from serving.client.model_client import ModelClient
from support.rollout_fixtures import MismatchedSignatureModel
from support.serving_fixtures import copy_version, free_port

REPLICA_READY_S = 240.0


class Replica:
    """One `mspipe serve` process on a fixed port (kept across restarts)."""

    def __init__(self, config: Path, log_dir: Path, index: int):
        self.config, self.index = config, index
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = log_dir / f"replica-{index}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Replica":
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mspipe", "serve", *serve_arguments(self.config, self.port),
             "--max_num_load_retries=0", "--log-level", "INFO"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        log.close()
        return self

    def wait_ready(self, timeout_s: float = REPLICA_READY_S) -> None:
        deadline = time.monotonic() + timeout_s
        with ModelClient(self.address, retries=0, timeout_s=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"replica {self.index} exited with "
                                       f"{self.process.returncode}: {self.log_tail()}")
                try:
                    if any(s.state == "AVAILABLE" for s in client.model_status()):
                        return
                except ServingError:
                    pass
                time.sleep(0.3)
        raise RuntimeError(f"replica {self.index} not ready in {timeout_s:.0f} s: "
                           f"{self.log_tail()}")

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_replicas(config: Path, log_dir: Path, count: int) -> list[Replica]:
    """`count` replicas started together (they load in parallel), each waited for."""
    replicas = [Replica(config, log_dir, index + 1).start() for index in range(count)]
    try:
        for replica in replicas:
            replica.wait_ready()
    except BaseException:
        for replica in replicas:
            replica.stop()
        raise
    return replicas


def publish_pushed(pushed_dir: str | os.PathLike, base: Path, version: int) -> Path:
    """A model the pipeline pushed, published as `version` under `base` (copy + rename)."""
    base.mkdir(parents=True, exist_ok=True)
    return copy_version(pushed_dir, base, version)


def publish_nan_copy(pushed_dir: str | os.PathLike, base: Path, version: int) -> Path:
    """The pushed model with every signature kept (names, inputs, outputs) but every float
    output multiplied by NaN: a candidate only the pre-flight's probe can catch."""
    loaded = tf.saved_model.load(os.fspath(pushed_dir))
    module = tf.Module()
    module.base = loaded
    signatures = {}
    for name, function in loaded.signatures.items():
        (key, spec), = function.structured_input_signature[1].items()

        def nan_outputs(tensor, function=function, key=key):
            outputs = function(**{key: tensor})
            return {k: v * float("nan") if v.dtype.is_floating else v
                    for k, v in outputs.items()}
        signatures[name] = tf.function(nan_outputs).get_concrete_function(
            tf.TensorSpec(spec.shape, spec.dtype, name=key))
    staging = Path(tempfile.mkdtemp(prefix=".nan-"))
    tf.saved_model.save(module, str(staging), signatures=signatures)
    return copy_version(staging, base, version)


def publish_renamed_input(base: Path, version: int, image_size: int) -> Path:
    """serving_default takes float32 `pixels` instead of uint8 `image`."""
    model = MismatchedSignatureModel(image_size)
    staging = Path(tempfile.mkdtemp(prefix=".renamed-"))
    tf.saved_model.save(model, str(staging), signatures={contract.SERVING_DEFAULT: model.serve})
    return copy_version(staging, base, version)
