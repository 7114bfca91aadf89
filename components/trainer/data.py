"""The Trainer's input pipeline: gzip TFRecords of tf.Examples -> (uint8 image, label) batches.

Records are read and parsed by TFX's own reader (tfx_bsl `TFExampleRecord.TensorFlowDataset`,
what `FnArgs.data_accessor.tf_dataset_factory` returns), with the curated schema projected to
the two features training needs, so the other features are never parsed. The raw image bytes
are decoded once per batch (`tf.io.decode_raw`) in a parallel map, and the result is prefetched
so reading overlaps training (bench/train.py measures the pipeline against in-memory arrays).

Class balance: every train example gets the weight n_total / (2 * n_class) of its class (the
"balanced" weighting), counted in one label-only pass over the train split before training. So
the loss treats both classes equally; metrics (AUC) stay unweighted. The same pass refuses an
empty split or a split with only one class, which could never train a classifier.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.tfxio import dataset_options

from components import features
from components.trainer.config import ModelConfig

DatasetFactory = Callable[
    [list[str], dataset_options.TensorFlowDatasetOptions, "schema_pb2.Schema | None"],
    tf.data.Dataset,
]
TELEMETRY_DESCRIPTORS = ["Trainer"]
_COUNT_BATCH_SIZE = 1024


def load_schema(path: str) -> schema_pb2.Schema:
    """Reads a Schema text proto (ImportSchemaGen's output or schemas/schema.pbtxt)."""
    from google.protobuf import text_format

    with tf.io.gfile.GFile(path, "r") as handle:
        try:
            return text_format.Parse(handle.read(), schema_pb2.Schema())
        except text_format.ParseError as error:
            raise ValueError(f"schema file {path} is not a valid Schema text proto: {error}") \
                from error


def project_schema(schema: schema_pb2.Schema, names: Sequence[str]) -> schema_pb2.Schema:
    """The schema restricted to `names`, so the reader parses only the features we use."""
    projected = schema_pb2.Schema()
    projected.CopyFrom(schema)
    del projected.feature[:]
    by_name = {feature.name: feature for feature in schema.feature}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ValueError(f"schema has no feature(s) {missing}; the Trainer needs {list(names)}")
    projected.feature.extend(by_name[name] for name in names)
    return projected


def tfxio_dataset_factory(file_pattern: list[str],
                          options: dataset_options.TensorFlowDatasetOptions,
                          schema: schema_pb2.Schema | None) -> tf.data.Dataset:
    """TFX's reader for tf.Example TFRecords, for use without a TFX `FnArgs`.

    `tfx.components.util.tfxio_utils.make_tfxio` is exactly what the Trainer's
    `data_accessor.tf_dataset_factory` calls for `FORMAT_TF_EXAMPLE` payloads.
    """
    from tfx.components.util import tfxio_utils
    from tfx.proto import example_gen_pb2

    tfxio = tfxio_utils.make_tfxio(
        file_pattern=file_pattern,
        telemetry_descriptors=TELEMETRY_DESCRIPTORS,
        payload_format=example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE,
        schema=schema)
    return tfxio.TensorFlowDataset(options)


def decode_image(image_bytes: tf.Tensor, image_size: int) -> tf.Tensor:
    """Raw bytes [N] -> uint8 [N, S, S, 1]; a record of the wrong length fails loudly.

    The schema cannot state the byte length (the image size is a pipeline parameter), and
    `decode_raw` alone would either fail with an opaque message or silently reshape garbage.
    """
    expected = image_size * image_size
    lengths = tf.strings.length(image_bytes)
    check = tf.debugging.assert_equal(
        lengths, tf.constant(expected, tf.int32), summarize=8,
        message=(f"feature {features.IMAGE} must hold image_size*image_size = {expected} raw "
                 f"uint8 bytes (image_size={image_size}), but a record has another length: was "
                 f"the data written for another image size? Byte lengths in this batch:"))
    with tf.control_dependencies([check]):
        flat = tf.io.decode_raw(image_bytes, tf.uint8)
    return tf.reshape(flat, [-1, image_size, image_size, 1])


@dataclass(frozen=True)
class LabelCounts:
    """Per-slice class counts of one split."""

    negatives: int
    positives: int

    @property
    def total(self) -> int:
        return self.negatives + self.positives

    def balanced_weights(self) -> tuple[float, float]:
        """(weight of class 0, weight of class 1) = total / (2 * count)."""
        return (self.total / (2.0 * self.negatives), self.total / (2.0 * self.positives))


def _checked_labels(batch: dict, split: str):
    """A batch's `label` values, flat; a ValueError naming the split for any other than 0/1."""
    labels = batch[features.LABEL].numpy().reshape(-1)
    bad = labels[(labels != 0) & (labels != 1)]
    if bad.size:
        raise ValueError(f"{split} split: feature '{features.LABEL}' must be 0 or 1, "
                         f"found {sorted(set(bad.tolist()))[:5]}")
    return labels


def count_labels(file_patterns: list[str], schema: schema_pb2.Schema,
                 dataset_factory: DatasetFactory, split: str) -> LabelCounts:
    """One pass over a split reading only `label`; rejects labels other than 0/1."""
    options = dataset_options.TensorFlowDatasetOptions(
        batch_size=_COUNT_BATCH_SIZE, num_epochs=1, shuffle=False)
    dataset = dataset_factory(file_patterns, options, project_schema(schema, [features.LABEL]))
    negatives = positives = 0
    for batch in dataset:
        labels = _checked_labels(batch, split)
        positives += int(labels.sum())
        negatives += int(labels.size - labels.sum())
    counts = LabelCounts(negatives=negatives, positives=positives)
    if counts.total == 0:
        raise ValueError(f"{split} split is empty (files {file_patterns})")
    return counts


def study_labels(file_patterns: list[str], schema: schema_pb2.Schema,
                 dataset_factory: DatasetFactory, split: str) -> dict[str, tuple[int, int]]:
    """study_id -> (label, slice count) of a split, in one pass reading only those two
    features; the study-level view the threshold's validation part is drawn from."""
    options = dataset_options.TensorFlowDatasetOptions(
        batch_size=_COUNT_BATCH_SIZE, num_epochs=1, shuffle=False)
    dataset = dataset_factory(file_patterns, options,
                              project_schema(schema, [features.LABEL, features.STUDY_ID]))
    studies: dict[str, tuple[int, int]] = {}
    for batch in dataset:
        labels = _checked_labels(batch, split)
        for study_id, label in zip(batch[features.STUDY_ID].numpy().reshape(-1), labels):
            study_id = study_id.decode()
            known = studies.get(study_id)
            if known is not None and known[0] != label:
                raise ValueError(f"{split} split: study {study_id} has slices labelled "
                                 f"{known[0]} and {label}; the label must be per study")
            studies[study_id] = (int(label), 1 + (known[1] if known else 0))
    if not studies:
        raise ValueError(f"{split} split is empty (files {file_patterns})")
    return studies


def require_both_classes(counts: LabelCounts, split: str) -> None:
    """A split with one class cannot train (or meaningfully evaluate) a classifier."""
    for label, count in ((0, counts.negatives), (1, counts.positives)):
        if count == 0:
            raise ValueError(
                f"{split} split has no examples with {features.LABEL}={label} "
                f"({counts.total} examples in all); training needs both classes")


def study_filter(study_ids: Sequence[str], keep: bool) -> Callable[..., tf.Tensor]:
    """A tf.data predicate on one (features, ...) element: is its study (not) in `study_ids`."""
    listed = tf.constant(sorted(study_ids), tf.string)

    def predicate(parsed: dict[str, tf.Tensor], *_) -> tf.Tensor:
        study_id = tf.reshape(parsed[features.STUDY_ID], [])
        found = tf.reduce_any(tf.equal(listed, study_id))
        return found if keep else tf.logical_not(found)
    return predicate


def without_studies(dataset: tf.data.Dataset, study_ids: Sequence[str],
                    batch_size: int) -> tf.data.Dataset:
    """The batched reader's output minus the slices of `study_ids`, re-batched."""
    return (dataset.unbatch().filter(study_filter(study_ids, keep=False))
            .batch(batch_size).map(lambda parsed, label: (
                {k: v for k, v in parsed.items() if k != features.STUDY_ID}, label)))


def make_dataset(file_patterns: list[str], config: ModelConfig, schema: schema_pb2.Schema,
                 dataset_factory: DatasetFactory, *, training: bool,
                 num_epochs: int | None,
                 class_weights: tuple[float, float] | None = None,
                 exclude_studies: Sequence[str] = ()) -> tf.data.Dataset:
    """Batches of (image uint8 [B,S,S,1], label float32 [B,1][, sample weight float32 [B]]).

    `training` shuffles (seeded: the same seed gives the same order); `num_epochs=None`
    repeats forever (for step-based schedules), 1 gives one pass. Slices of
    `exclude_studies` (the threshold's validation studies) are left out.
    """
    options = dataset_options.TensorFlowDatasetOptions(
        batch_size=config.batch_size,
        num_epochs=num_epochs,
        shuffle=training,
        shuffle_buffer_size=config.shuffle_buffer_size,
        shuffle_seed=config.seed if training else None,
        label_key=features.LABEL,
    )
    schema = project_schema(schema, [features.IMAGE, features.LABEL]
                            + ([features.STUDY_ID] if exclude_studies else []))
    dataset = dataset_factory(file_patterns, options, schema)
    if exclude_studies:
        dataset = without_studies(dataset, exclude_studies, config.batch_size)
    weights = None if class_weights is None else tf.constant(class_weights, tf.float32)
    image_size = config.image_size

    def to_model_inputs(parsed: dict[str, tf.Tensor], label: tf.Tensor):
        image = decode_image(parsed[features.IMAGE], image_size)
        label = tf.reshape(label, [-1])
        target = tf.cast(tf.reshape(label, [-1, 1]), tf.float32)
        if weights is None:
            return image, target
        return image, target, tf.gather(weights, label)

    dataset = dataset.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)
    if training and config.flip_left_right:
        dataset = random_left_right_flips(dataset, config.seed)
    return dataset.prefetch(tf.data.AUTOTUNE)


def random_left_right_flips(dataset: tf.data.Dataset, seed: int) -> tf.data.Dataset:
    """Mirrors each image of each batch left-right with probability 1/2. The draws are
    stateless, keyed by (seed, batch number): a rerun with the same seed flips the same
    slices, and a repeated dataset draws anew in each pass (the batch number keeps counting)."""
    def flip(batch_number, batch):
        image = batch[0]
        draw = tf.random.stateless_uniform([tf.shape(image)[0]],
                                           seed=tf.stack([tf.cast(seed, tf.int64), batch_number]))
        mirrored = tf.reshape(draw < 0.5, [-1, 1, 1, 1])
        return (tf.where(mirrored, tf.reverse(image, axis=[2]), image),) + tuple(batch[1:])

    return dataset.enumerate().map(flip,
                                   num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
