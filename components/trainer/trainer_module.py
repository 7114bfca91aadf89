"""The TFX Trainer's user module: `run_fn(fn_args)`.

Use it with `Trainer(run_fn="components.trainer.trainer_module.run_fn", ...)` (the package is
installed, so no module file needs copying), `examples=` the ExampleGen output, `schema=`
ImportSchemaGen's output, and `custom_config=` any `ModelConfig` field, e.g.
`{"image_size": 64, "widths": [8, 16, 32], "epochs": 2, "batch_size": 16, "seed": 7}`.
`TrainArgs(num_steps=...)` / `EvalArgs(num_steps=...)` are optional: without them every epoch
is one pass over the train split and evaluation one pass over the eval split.
"""
from __future__ import annotations

import logging

from components.trainer.config import ModelConfig
from components.trainer.training import TrainResult, train_and_export

log = logging.getLogger(__name__)


def run_fn(fn_args) -> TrainResult:
    """Trains the slice classifier and writes the serving SavedModel (TFX Trainer entry point).

    `fn_args` is a `tfx.components.FnArgs`; reads train/eval files through its
    `data_accessor.tf_dataset_factory`, TensorBoard logs go to `model_run_dir`.
    Without a schema input the packaged schemas/schema.pbtxt is used.
    """
    config = ModelConfig.from_custom_config(fn_args.custom_config)
    log.info("Trainer settings: %s", config.to_dict())
    return train_and_export(
        train_files=list(fn_args.train_files),
        eval_files=list(fn_args.eval_files or []),
        config=config,
        serving_model_dir=fn_args.serving_model_dir,
        log_dir=fn_args.model_run_dir,
        schema_path=fn_args.schema_path,
        dataset_factory=fn_args.data_accessor.tf_dataset_factory,
        train_steps=fn_args.train_steps,
        eval_steps=fn_args.eval_steps,
    )
