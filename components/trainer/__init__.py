"""The Trainer: model (model.py), input pipeline (data.py), export (export.py), training
(training.py) and the TFX user module (trainer_module.run_fn). Import submodules directly;
this package imports nothing heavy."""
