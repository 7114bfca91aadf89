"""Training and export without TFX: what `run_fn` calls, and what bench/ and tests use.

Metrics logged here are per slice (each example is one slice); study-level metrics are the
Evaluator's job.
"""
from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field

import tensorflow as tf
import tf_keras as keras

from components import features
from components.contract import THRESHOLD_RECORD
from components.dicom.metrics import ThresholdChoice, aggregate_by_study, choose_threshold
from components.dicom_example_gen.splits import EVAL, TRAIN, assign_splits
from components.trainer.config import ModelConfig
from components.trainer.data import (DatasetFactory, LabelCounts, count_labels, decode_image,
                                     load_schema,
                                     make_dataset, project_schema, require_both_classes,
                                     study_filter, study_labels, tfxio_dataset_factory)
from components.trainer.export import export_serving_model
from components.trainer.model import build_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """Epochs of `steps_per_epoch` batches; `validation_steps=None` = one full eval pass."""

    epochs: int
    steps_per_epoch: int
    validation_steps: int | None


def resolve_schedule(config: ModelConfig, train_examples: int, train_steps: int | None,
                     eval_steps: int | None) -> Schedule:
    """TFX's TrainArgs.num_steps (total steps) wins, spread over `config.epochs`; else
    `config.steps_per_epoch`; else an epoch is one pass over the train split
    (ceil(examples / batch_size) steps), sensible for the tiny datasets of tests and demos.

    The train dataset always repeats and Keras keeps one iterator for the whole fit, so the
    shuffle buffer is filled once, not again at every epoch start (a stall bench/train.py saw).
    """
    if train_steps is not None and train_steps < 1:
        raise ValueError(f"train_steps must be >= 1 or None, got {train_steps}")
    if eval_steps is not None and eval_steps < 1:
        raise ValueError(f"eval_steps must be >= 1 or None, got {eval_steps}")
    epochs = config.epochs
    if train_steps is not None:
        epochs = min(config.epochs, train_steps)
        steps = math.ceil(train_steps / epochs)
    elif config.steps_per_epoch is not None:
        steps = config.steps_per_epoch
    else:
        steps = math.ceil(train_examples / config.batch_size)
    return Schedule(epochs=epochs, steps_per_epoch=steps, validation_steps=eval_steps)


@dataclass
class TrainResult:
    """What a run did: the per-epoch history, and the split counts it trained on."""

    serving_model_dir: str
    schedule: Schedule
    train_counts: LabelCounts
    eval_counts: LabelCounts | None
    threshold: ThresholdChoice | None = None  # None: the fixed fallback was exported
    validation_studies: tuple[str, ...] = ()
    history: dict[str, list[float]] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Python, NumPy and TF seeds: same seed, same initial weights, shuffle and dropout."""
    keras.utils.set_random_seed(seed)


def train_and_export(train_files: list[str], eval_files: list[str] | None, config: ModelConfig,
                     serving_model_dir: str, log_dir: str | None, *,
                     schema_path: str | None = None,
                     dataset_factory: DatasetFactory | None = None,
                     train_steps: int | None = None,
                     eval_steps: int | None = None) -> TrainResult:
    """Trains on gzip tf.Example TFRecords (file patterns) and exports the serving model.

    `schema_path` defaults to the curated schemas/schema.pbtxt; `dataset_factory` defaults to
    TFX's own tf.Example reader (the Trainer passes its `data_accessor.tf_dataset_factory`).
    `log_dir` receives TensorBoard logs and the resolved settings (`trainer_config.json`).
    """
    if not train_files:
        raise ValueError("train_and_export needs at least one train file pattern")
    if schema_path is None:
        from schemas import schema_path as packaged_schema_path
        schema_path = packaged_schema_path()
    schema = load_schema(schema_path)
    factory = dataset_factory or tfxio_dataset_factory
    seed_everything(config.seed)

    validation_studies: tuple[str, ...] = ()
    if config.threshold_validation_fraction > 0:
        train_studies = study_labels(train_files, schema, factory, "train")
        validation_studies = threshold_validation_studies(
            train_studies, config.threshold_validation_fraction)
        held_out = set(validation_studies)
        kept = [v for s, v in train_studies.items() if s not in held_out]
        train_counts = LabelCounts(negatives=sum(n for label, n in kept if label == 0),
                                   positives=sum(n for label, n in kept if label == 1))
    else:
        train_counts = count_labels(train_files, schema, factory, "train")
    require_both_classes(train_counts, "train")
    eval_counts = count_labels(eval_files, schema, factory, "eval") if eval_files else None
    schedule = resolve_schedule(config, train_counts.total, train_steps, eval_steps)
    log.info("per-slice counts: train %s, eval %s; schedule %s", train_counts, eval_counts,
             schedule)

    weights = train_counts.balanced_weights() if config.class_balance else None
    train_dataset = make_dataset(train_files, config, schema, factory, training=True,
                                 num_epochs=None, class_weights=weights,
                                 exclude_studies=validation_studies)
    eval_dataset = None
    if eval_files:
        eval_dataset = make_dataset(
            eval_files, config, schema, factory, training=False,
            num_epochs=None if schedule.validation_steps is not None else 1)

    model = build_model(config)
    callbacks = []
    if log_dir:
        tf.io.gfile.makedirs(log_dir)
        _write_settings(log_dir, config, schedule, train_counts, eval_counts)
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch",
                                                     profile_batch=0))
    history = model.fit(train_dataset, epochs=schedule.epochs,
                        steps_per_epoch=schedule.steps_per_epoch,
                        validation_data=eval_dataset,
                        validation_steps=schedule.validation_steps if eval_dataset else None,
                        callbacks=callbacks, verbose=2)
    choice = None
    if validation_studies:
        scores = validation_scores(model, train_files, validation_studies, config, schema,
                                   factory)
        choice = choose_threshold(scores.mean_probability, scores.label,
                                  rule=config.threshold_rule,
                                  min_sensitivity=config.threshold_min_sensitivity,
                                  what="operating threshold on the validation studies")
        log.info("operating threshold %.4f (%s rule) on %d MS + %d control validation "
                 "studies of the train split: sensitivity %.3f, specificity %.3f per study",
                 choice.threshold, choice.rule, choice.positives, choice.negatives,
                 choice.sensitivity, choice.specificity)
    threshold = choice.threshold if choice else config.fixed_threshold
    export_serving_model(model, config.image_size, serving_model_dir, threshold)
    _write_threshold(serving_model_dir, choice, threshold)
    return TrainResult(serving_model_dir=serving_model_dir, schedule=schedule,
                       train_counts=train_counts, eval_counts=eval_counts, threshold=choice,
                       validation_studies=validation_studies,
                       history={k: [float(v) for v in vs] for k, vs in history.history.items()})


def threshold_validation_studies(train_studies: dict[str, tuple[int, int]],
                                 fraction: float) -> tuple[str, ...]:
    """The train studies held out of fitting to choose the threshold on: the split rule of
    DicomExampleGen (by study, stratified by label, ordered by the salted hash), so the same
    data always gives the same part. Needs two studies of each class (one to fit, one to
    validate); with fewer, none is held out (empty result: the fixed threshold is exported)."""
    labels = {study: label for study, (label, _) in train_studies.items()}
    per_class = [sum(1 for v in labels.values() if v == c) for c in (1, 0)]
    if min(per_class) < 2:
        # Too few to hold any out: train on all, keep the fixed threshold, and say so (the
        # report and every client name the threshold "fallback"/"fixed").
        log.warning("train split has %d MS and %d control studies: choosing the operating "
                    "threshold on a held-out part needs at least 2 of each; exporting the "
                    "fixed threshold instead", *per_class)
        return ()
    assignment = assign_splits(labels, {TRAIN: 1.0 - fraction, EVAL: fraction})
    return tuple(sorted(study for study, split in assignment.items() if split == EVAL))


def validation_scores(model: keras.Model, train_files: list[str],
                      validation_studies: tuple[str, ...], config: ModelConfig, schema,
                      factory: DatasetFactory):
    """Study scores (mean slice probability) of the held-out validation studies."""
    from tfx_bsl.tfxio import dataset_options
    options = dataset_options.TensorFlowDatasetOptions(
        batch_size=config.batch_size, num_epochs=1, shuffle=False)
    dataset = factory(train_files, options, project_schema(
        schema, [features.IMAGE, features.LABEL, features.STUDY_ID]))
    dataset = dataset.unbatch().filter(study_filter(validation_studies, keep=True)) \
        .batch(config.batch_size)
    study_ids, probabilities, labels = [], [], []
    for batch in dataset:
        image = decode_image(tf.reshape(batch[features.IMAGE], [-1]), config.image_size)
        logits = model(image, training=False)
        probabilities += tf.sigmoid(tf.reshape(logits, [-1])).numpy().tolist()
        study_ids += [s.decode() for s in batch[features.STUDY_ID].numpy().reshape(-1)]
        labels += batch[features.LABEL].numpy().reshape(-1).tolist()
    return aggregate_by_study(study_ids, probabilities, labels)


def _write_threshold(serving_model_dir: str, choice: ThresholdChoice | None,
                     threshold: float) -> None:
    """How the threshold was chosen, on how many studies, inside the SavedModel's
    assets.extra/ (which servers do not load: the value itself is the signatures' output), so
    it travels with every copy of the model; the evaluation report reads it."""
    record = {"threshold": threshold, "rule": choice.rule if choice else "fixed",
              "validation": None if choice is None else {
                  "positive_studies": choice.positives, "negative_studies": choice.negatives,
                  "sensitivity": choice.sensitivity, "specificity": choice.specificity}}
    path = os.path.join(serving_model_dir, THRESHOLD_RECORD)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(record, indent=2, sort_keys=True))


def _write_settings(log_dir: str, config: ModelConfig, schedule: Schedule,
                    train_counts: LabelCounts, eval_counts: LabelCounts | None) -> None:
    """Records what this run actually used, next to its TensorBoard logs."""
    settings = {
        "model_config": config.to_dict(),
        "schedule": schedule.__dict__,
        "train_counts_per_slice": train_counts.__dict__,
        "eval_counts_per_slice": eval_counts.__dict__ if eval_counts else None,
    }
    with tf.io.gfile.GFile(os.path.join(log_dir, "trainer_config.json"), "w") as handle:
        handle.write(json.dumps(settings, indent=2, sort_keys=True))
