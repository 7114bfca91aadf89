"""Tiny, hand-checkable inputs for the Evaluator and report tests.

A SavedModel that follows the signature contract (components/contract.py) with a transparent
rule (probability = weighted mean pixel / 256, exact in binary floating point so study means
tie exactly where the arithmetic says they do), and gzip TFRecords with the features of
components/features.py. Everything is small enough to compute the expected metrics by hand.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from components import contract, features

IMAGE_SIZE = 16


@dataclass(frozen=True)
class SliceSpec:
    """One eval slice: left half of the image filled with `left`, right half with `right`."""
    study_id: str
    scanner: str
    label: int
    left: int
    right: int


# Candidate (whole-image mean) study means, in pixel units: s1 160, s2 80, s3 80 (a tie with
# s2), s4 100, s5 140, s6 40. Positives s1, s3, s5 vs negatives s2, s4, s6:
# s1 beats all 3; s3 ties s2 (0.5), loses to s4, beats s6; s5 beats all 3 -> 7.5 / 9.
# Baseline (left-half mean): positives 210, 150, 170 vs negatives 40, 60, 20 -> 1.0.
EVAL_SLICES: tuple[SliceSpec, ...] = (
    SliceSpec("s1", "siemens", 1, 220, 180), SliceSpec("s1", "siemens", 1, 200, 40),
    SliceSpec("s2", "siemens", 0, 50, 150), SliceSpec("s2", "siemens", 0, 30, 90),
    SliceSpec("s3", "siemens", 1, 150, 10),
    SliceSpec("s4", "ge", 0, 110, 250), SliceSpec("s4", "ge", 0, 10, 30),
    SliceSpec("s5", "ge", 1, 180, 100), SliceSpec("s5", "ge", 1, 160, 120),
    SliceSpec("s5", "ge", 1, 170, 110),
    SliceSpec("s6", "ge", 0, 20, 60),
)
EXPECTED_CANDIDATE_STUDY_AUC = 7.5 / 9
EXPECTED_BASELINE_STUDY_AUC = 1.0
# Per scanner, candidate: siemens s1 (160), s3 (80) vs s2 (80) -> (1 + 0.5) / 2;
# ge s5 (140) vs s4 (100), s6 (40) -> 1.0.
EXPECTED_CANDIDATE_STUDY_AUC_BY_SCANNER = {"siemens": 0.75, "ge": 1.0}


def slice_image(spec: SliceSpec, image_size: int = IMAGE_SIZE) -> np.ndarray:
    image = np.empty((image_size, image_size, 1), dtype=np.uint8)
    image[:, : image_size // 2] = spec.left
    image[:, image_size // 2:] = spec.right
    return image


def candidate_probability(spec: SliceSpec) -> float:
    return (spec.left + spec.right) / 2 / 256


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def hashed_study_id(name: str) -> str:
    """What ExampleGen writes: a salted hash, never the raw StudyInstanceUID."""
    return features.hash_uid(f"1.2.826.0.1.{name}")


def to_example(spec: SliceSpec, slice_index: int, image_size: int = IMAGE_SIZE) -> bytes:
    feature = {
        features.IMAGE: _bytes(slice_image(spec, image_size).tobytes()),
        features.LABEL: _int(spec.label),
        features.STUDY_ID: _bytes(hashed_study_id(spec.study_id).encode()),
        features.SERIES_ID: _bytes(hashed_study_id(spec.study_id + ".series").encode()),
        features.SCANNER: _bytes(spec.scanner.encode()),
        features.SLICE_INDEX: _int(slice_index),
        features.ORIENTATION: _bytes(b"axial"),
        features.ROWS: _int(image_size),
        features.COLS: _int(image_size),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_split(split_dir: str, slices: tuple[SliceSpec, ...] = EVAL_SLICES,
                image_size: int = IMAGE_SIZE) -> str:
    """Writes one gzip TFRecord file, as ExampleGen does under Split-<name>/."""
    os.makedirs(split_dir, exist_ok=True)
    path = os.path.join(split_dir, "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for index, spec in enumerate(slices):
            writer.write(to_example(spec, index, image_size))
    return path


class _WeightedMeanPixelModel(tf.Module):
    """probability = mean of image * mask (normalised) / 256; logit = its log-odds."""

    def __init__(self, image_size: int, mask: np.ndarray):
        super().__init__()
        self._image_size = image_size
        self._mask = tf.constant(mask / mask.sum(), dtype=tf.float32)
        image_spec = tf.TensorSpec([None, image_size, image_size, 1], tf.uint8,
                                   name=contract.IMAGE_INPUT)
        examples_spec = tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)
        self.serve_images = tf.function(self._serve_images, input_signature=[image_spec])
        self.serve_examples = tf.function(self._serve_examples, input_signature=[examples_spec])

    def _serve_images(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.cast(image, tf.float32)
        probability = tf.reduce_sum(pixels * self._mask, axis=[1, 2, 3]) / 256.0
        clipped = tf.clip_by_value(probability, 1e-6, 1 - 1e-6)
        return {contract.PROBABILITY: probability,
                contract.LOGIT: tf.math.log(clipped / (1 - clipped))}

    def _serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(
            examples, {features.IMAGE: tf.io.FixedLenFeature([], tf.string)})
        image = tf.io.decode_raw(parsed[features.IMAGE], tf.uint8)
        image = tf.reshape(image, [-1, self._image_size, self._image_size, 1])
        return self._serve_images(image)


def export_model(export_dir: str, *, baseline: bool = False,
                 image_size: int = IMAGE_SIZE) -> str:
    """Candidate: whole-image mean. Baseline: left-half mean (separates the studies fully)."""
    mask = np.ones((image_size, image_size, 1), dtype=np.float32)
    if baseline:
        mask[:, image_size // 2:] = 0.0
    module = _WeightedMeanPixelModel(image_size, mask)
    tf.saved_model.save(module, export_dir, signatures={
        contract.SERVING_DEFAULT: module.serve_images,
        contract.SERVING_EXAMPLES: module.serve_examples,
    })
    return export_dir


@dataclass(frozen=True)
class EvaluatorRun:
    evaluation_uri: str
    blessing_uri: str

    @property
    def blessed(self) -> bool:
        return os.path.exists(os.path.join(self.blessing_uri, "BLESSED"))


def write_model_artifact(model_uri: str, *, baseline: bool = False) -> str:
    """A Trainer-style Model artifact folder: the SavedModel lives under Format-Serving/."""
    export_model(os.path.join(model_uri, "Format-Serving"), baseline=baseline)
    return model_uri


def run_evaluator(work_dir: str, eval_config, *, examples_uri: str, model_uri: str,
                  baseline_model_uri: str | None = None) -> EvaluatorRun:
    """Runs the real TFX Evaluator executor, as the pipeline's Evaluator component does."""
    from tfx.components.evaluator import executor
    from tfx.types import artifact_utils, standard_artifacts
    from tfx.types import standard_component_specs as keys
    from tfx.utils import proto_utils

    examples = standard_artifacts.Examples()
    examples.uri = examples_uri
    examples.split_names = artifact_utils.encode_split_names(["eval"])
    model = standard_artifacts.Model()
    model.uri = model_uri
    input_dict = {keys.EXAMPLES_KEY: [examples], keys.MODEL_KEY: [model]}
    if baseline_model_uri:
        baseline = standard_artifacts.Model()
        baseline.uri = baseline_model_uri
        input_dict[keys.BASELINE_MODEL_KEY] = [baseline]
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = os.path.join(work_dir, "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = os.path.join(work_dir, "blessing")
    os.makedirs(blessing.uri, exist_ok=True)
    executor.Executor().Do(
        input_dict, {keys.EVALUATION_KEY: [evaluation], keys.BLESSING_KEY: [blessing]},
        {keys.EVAL_CONFIG_KEY: proto_utils.proto_to_json(eval_config)})
    return EvaluatorRun(evaluation.uri, blessing.uri)
