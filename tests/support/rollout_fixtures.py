"""Helpers for tests/test_rollout.py: the test model versions, an eval split, a routed caller.

`ModelSource` is the one place that says where model versions come from. Today it builds real
SavedModels on serving_fixtures' contract model (a shifted logit for a close relative, NaN
outputs, a mismatched signature); switching to versions pushed by the real pipeline means
publishing those under `base` with the same version numbers.
"""
from __future__ import annotations

import contextlib
import io
import random
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from components import contract, features
from mspipe import main as cli
from serving.api.errors import ServingError
from serving.client.model_client import ModelClient
from serving.api.model_config import (build_model_config, model_entry, read_model_config,
                                  version_policy, write_model_config)
from serving.rollout.traffic import CanaryRouter
from support.waiting import FAST, wait_until  # noqa: F401 -- re-exported to the tests
from support.serving_fixtures import (IMAGE_SIZE, MODEL_NAME, ContractModel, contract_signatures,
                              copy_version, random_images)



# ------------------------------------------------------------------ the model source
class CandidateModel(ContractModel):
    """serving_fixtures' contract model, optionally with its logit shifted or made NaN."""

    def __init__(self, image_size: int, seed: int, logit_shift: float = 0.0,
                 produce_nan: bool = False):
        self.logit_shift = float(logit_shift)
        self.produce_nan = produce_nan
        super().__init__(image_size, seed)

    def logits(self, image):
        logit = super().logits(image) + self.logit_shift
        return logit * float("nan") if self.produce_nan else logit


class FailingModel(CandidateModel):
    """The contract's signatures (so it passes a signature-only pre-flight) and it answers a
    blank warm-up image, but every call on a real image fails with INVALID_ARGUMENT: a canary
    that only live traffic shows broken."""

    def logits(self, image):
        check = tf.debugging.assert_less(tf.reduce_sum(tf.cast(image, tf.float32)), 1.0,
                                         message="this canary fails every request")
        with tf.control_dependencies([check]):
            return tf.identity(super().logits(image))


class MismatchedSignatureModel(tf.Module):
    """Loads fine, but serving_default wants float32 `pixels`: every client call fails."""

    def __init__(self, image_size: int):
        super().__init__()
        spec = tf.TensorSpec([None, image_size, image_size, 1], tf.float32, name="pixels")
        self.serve = tf.function(lambda pixels: {
            contract.PROBABILITY: tf.reduce_mean(pixels, axis=[1, 2, 3])}, input_signature=[spec])


class ModelSource:
    """Where test versions come from: the one place to change when versions are pushed by
    the real pipeline instead (publish them under `base` with the same version numbers)."""

    def __init__(self, base: Path, staging: Path):
        self.base, self.staging = base, staging

    def _publish(self, module: tf.Module, signatures: dict, version: int) -> Path:
        folder = Path(tempfile.mkdtemp(dir=self.staging))
        tf.saved_model.save(module, str(folder), signatures=signatures)
        self.base.mkdir(parents=True, exist_ok=True)
        return copy_version(folder, self.base, version)

    def good(self, version: int, logit_shift: float = 0.0) -> Path:
        model = CandidateModel(IMAGE_SIZE, seed=1, logit_shift=logit_shift)
        return self._publish(model, contract_signatures(model), version)

    def nan(self, version: int) -> Path:
        model = CandidateModel(IMAGE_SIZE, seed=1, produce_nan=True)
        return self._publish(model, contract_signatures(model), version)

    def failing(self, version: int) -> Path:
        model = FailingModel(IMAGE_SIZE, seed=1)
        return self._publish(model, contract_signatures(model), version)

    def bad_signature(self, version: int) -> Path:
        model = MismatchedSignatureModel(IMAGE_SIZE)
        return self._publish(model, {contract.SERVING_DEFAULT: model.serve}, version)



def initial_config(tmp_path: Path, model_source: ModelSource) -> Path:
    """Version 1 served alone, no labels yet (a server without the labels flag starts)."""
    path = tmp_path / "models.config"
    write_model_config(path, build_model_config([model_entry(MODEL_NAME, model_source.base,
                                                             versions=[1])]))
    return path


def write_eval_tfrecords(folder: Path, studies: int = 12, slices_per_study: int = 3) -> Path:
    """An eval split as the pipeline writes it: gzip TFRecords of the features contract."""
    folder.mkdir(parents=True)
    images = random_images(studies * slices_per_study, seed=7)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(folder / "data_tfrecord-00000-of-00001.gz"), options) as out:
        for index, image in enumerate(images):
            study = index // slices_per_study

            def feature(value):
                if isinstance(value, int):
                    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
                return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
            example = tf.train.Example(features=tf.train.Features(feature={
                features.IMAGE: feature(image.tobytes()), features.LABEL: feature(study % 2),
                features.STUDY_ID: feature(features.hash_uid(f"1.2.3.{study}").encode())}))
            out.write(example.SerializeToString())
    return folder


def mspipe(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["rollout", *args])
    return code, out.getvalue(), err.getvalue()


def common(server, config: Path) -> list[str]:
    return ["--server", server.address, "--model-config", str(config), "--timeout", "60"]




def served_entry(config: Path) -> tuple[tuple[int, ...], dict[str, int]]:
    entry = read_model_config(config).model_config_list.config[0]
    return version_policy(entry)[1], dict(entry.version_labels)


class RoutedLoop(threading.Thread):
    """A caller predicting whole studies the whole time, through the canary router (or a
    fixed label); records (study key, routed label, answering version) and every failure."""

    def __init__(self, address: str, config: Path, *, label: str | None = None,
                 study_keys: int = 1000, images: np.ndarray | None = None,
                 **client_settings):
        super().__init__(daemon=True)
        client_settings = {"retries": 0, "timeout_s": 10, **client_settings}
        self.client = ModelClient(address, **client_settings)
        self.router = CanaryRouter.from_rollout_state(self.client, config)
        self.label = label
        self.keys = [f"study-{i}" for i in range(study_keys)]
        self.images = random_images(2) if images is None else images
        self.answers: list[tuple[str, str, int]] = []
        self.failures: list[str] = []
        self.stop_event = threading.Event()

    def run(self):
        rng = random.Random(0)
        while not self.stop_event.is_set():
            key = rng.choice(self.keys)
            try:
                if self.label is None:
                    routed = self.router.predict_study(self.images, key)
                    label, result = ("stable" if routed.fell_back else routed.label), routed.result
                else:
                    label, result = self.label, self.client.predict_tensors(self.images,
                                                                            label=self.label)
                assert np.isfinite(result.probabilities).all()
                self.answers.append((key, label, result.model_version))
            except (ServingError, AssertionError) as error:
                self.failures.append(str(error))
            time.sleep(0.005)

    def finish(self):
        self.stop_event.set()
        self.join(timeout=20)
        self.client.close()
