"""Evaluation: the TFMA config that gates the blessing, and the study-level metric it gates on.

Kept import-light: `roc` is pure numpy; `eval_config` and `study_metrics` import TFMA.
"""
