"""EvaluationReport's executor: gathers what the upstream components recorded, writes the page.

Nothing is recomputed that a component already recorded: the metrics and blessing checks are
TFMA's (report_data.load_tfma_summary), split sizes and reject counts DicomExampleGen's
artifact properties. Only the candidate's per-slice predictions, which no component keeps,
are computed (report_data.predict_split) for the figures and per-scanner numbers.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.dicom_example_gen import properties

EXAMPLES_KEY, REJECTS_KEY, MODEL_KEY = "examples", "rejects", "model"
EVALUATION_KEY, BLESSING_KEY, PUSHED_MODEL_KEY = "evaluation", "blessing", "pushed_model"
REPORT_KEY = "report"
MODEL_NAME_KEY = "model_name"


def _custom_int(artifact: types.Artifact, key: str) -> Optional[int]:
    return artifact.get_int_custom_property(key) if artifact.has_custom_property(key) else None


def _pushed_version(pushed_model: types.Artifact) -> Optional[int]:
    if _custom_int(pushed_model, "pushed") != 1:
        return None
    version = pushed_model.get_string_custom_property("pushed_version")
    return int(version) if version else None


class Executor(base_executor.BaseExecutor):
    """Writes `<report>/index.html` and its PNG figures."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        from components.evaluation_report.report import write_report  # matplotlib only here

        def single(key: str) -> types.Artifact:
            return artifact_utils.get_single_instance(input_dict[key])

        examples = single(EXAMPLES_KEY)
        report = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        path = write_report(
            report.uri,
            evaluation_uri=single(EVALUATION_KEY).uri,
            model_dir=path_utils.serving_model_path(single(MODEL_KEY).uri),
            eval_examples_uri=artifact_utils.get_split_uri([examples], "eval"),
            split_sizes=properties.read_split_sizes(examples),
            rejects=properties.read_reject_counts(single(REJECTS_KEY)),
            blessed=_custom_int(single(BLESSING_KEY), "blessed") == 1,
            pushed_version=_pushed_version(single(PUSHED_MODEL_KEY)),
            model_name=exec_properties[MODEL_NAME_KEY],
        )  # the decision threshold is the model's own (its signatures' decision_threshold)
        print(f"Evaluation report written: {os.path.join(report.uri, os.path.basename(path))}")
