"""Evaluation: the TFMA config that gates the blessing, and the study-level metric it gates on.

Kept import-light (the blessing defaults below are read by PipelineConfig and `--help`);
`eval_config` and `study_metrics` import TFMA.
"""

# The blessing: study-level AUC on the eval split must reach MIN_STUDY_AUC, and may fall below
# the last blessed model's by at most MAX_AUC_DROP (one study flips a few dozen-study AUC by
# more than 0.01, so a zero tolerance would refuse equal models by chance).
MIN_STUDY_AUC = 0.8
MAX_AUC_DROP = 0.02
