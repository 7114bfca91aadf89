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

from components.trainer.config import ModelConfig
from components.trainer.data import (DatasetFactory, LabelCounts, count_labels, load_schema,
                                     make_dataset, require_both_classes, tfxio_dataset_factory)
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

    train_counts = count_labels(train_files, schema, factory, "train")
    require_both_classes(train_counts, "train")
    eval_counts = count_labels(eval_files, schema, factory, "eval") if eval_files else None
    schedule = resolve_schedule(config, train_counts.total, train_steps, eval_steps)
    log.info("per-slice counts: train %s, eval %s; schedule %s", train_counts, eval_counts,
             schedule)

    weights = train_counts.balanced_weights() if config.class_balance else None
    train_dataset = make_dataset(train_files, config, schema, factory, training=True,
                                 num_epochs=None, class_weights=weights)
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
    export_serving_model(model, config.image_size, serving_model_dir)
    return TrainResult(serving_model_dir=serving_model_dir, schedule=schedule,
                       train_counts=train_counts, eval_counts=eval_counts,
                       history={k: [float(v) for v in vs] for k, vs in history.history.items()})


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
