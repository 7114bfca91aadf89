"""Classify and Regress: the tf.Example APIs of PredictionService, for signatures shaped for them.

TF Serving (with its default, disabled method-name check) accepts a signature for Classify when
it has exactly one input named `inputs` (serialized tf.Examples) and one or two outputs among
`classes` / `scores`; for Regress, one input `inputs` and one output `outputs`. Anything else is
INVALID_ARGUMENT. The MS model's `serving_examples` signature returns `probability`/`logit`, so
it is a Predict signature: clients use Predict for it, as TF Serving would require.
"""
from __future__ import annotations

import numpy as np

from components.contract import SERVING_DEFAULT
from serving.api.errors import invalid_argument
from serving.api.protos import (classification_pb2, input_pb2, meta_graph_pb2, regression_pb2,
                                types_pb2)
from serving.server.servable import Servable

INPUTS, CLASSES, SCORES, OUTPUTS = "inputs", "classes", "scores", "outputs"


def serialized_examples(request_input: input_pb2.Input) -> np.ndarray:
    """Input -> string [N]; with a context, each example is context + example bytes, which
    parse as the merge of both (what TF Serving feeds)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        examples = [context + e.SerializeToString() for e in with_context.examples]
    else:
        examples = []
    if not examples:
        raise invalid_argument("Input is empty: give example_list or example_list_with_context "
                               "with at least one example")
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return array


def _signature(servable: Servable, name: str) -> tuple[str, meta_graph_pb2.SignatureDef]:
    name = name or SERVING_DEFAULT
    if name not in servable.signature_defs:
        raise invalid_argument(f"No signature was found with the name: {name}")
    return name, servable.signature_defs[name]


def _check_examples_input(signature: meta_graph_pb2.SignatureDef, api: str) -> None:
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if INPUTS not in signature.inputs or signature.inputs[INPUTS].dtype != types_pb2.DT_STRING:
        raise invalid_argument(f"No {api} inputs found in SignatureDef: expected one string "
                               f"input named '{INPUTS}', got {sorted(signature.inputs)}")


def classify(servable: Servable, request: classification_pb2.ClassificationRequest
             ) -> classification_pb2.ClassificationResponse:
    name, signature = _signature(servable, request.model_spec.signature_name)
    _check_examples_input(signature, "classification")
    wanted = [alias for alias in (CLASSES, SCORES) if alias in signature.outputs]
    if len(signature.outputs) not in (1, 2) or not wanted:
        raise invalid_argument(
            'Expected classification signature outputs to contain at least one of "classes" '
            f'or "scores". Signature outputs were: {sorted(signature.outputs)}')
    examples = serialized_examples(request.input)
    outputs = servable.run(name, {INPUTS: examples})
    response = classification_pb2.ClassificationResponse()
    _fill_model_spec(response.model_spec, servable, name)
    scores = outputs.get(SCORES)
    classes = outputs.get(CLASSES)
    for index in range(len(examples)):
        result = response.result.classifications.add()
        row_scores = None if scores is None else np.asarray(scores[index]).reshape(-1)
        row_classes = None if classes is None else np.asarray(classes[index]).reshape(-1)
        for k in range(len(row_scores) if row_scores is not None else len(row_classes)):
            entry = result.classes.add()
            if row_classes is not None:
                entry.label = _text(row_classes[k])
            if row_scores is not None:
                entry.score = float(row_scores[k])
    return response


def regress(servable: Servable, request: regression_pb2.RegressionRequest
            ) -> regression_pb2.RegressionResponse:
    name, signature = _signature(servable, request.model_spec.signature_name)
    _check_examples_input(signature, "regression")
    if len(signature.outputs) != 1 or OUTPUTS not in signature.outputs:
        raise invalid_argument(f"Expected one output Tensor named '{OUTPUTS}' in a regression "
                               f"signature, got {sorted(signature.outputs)}")
    examples = serialized_examples(request.input)
    values = np.asarray(servable.run(name, {INPUTS: examples})[OUTPUTS])
    if values.size != len(examples):
        raise invalid_argument(f"Expected output Tensor shape to be [{len(examples)}] or "
                               f"[{len(examples)}, 1], got {list(values.shape)}")
    response = regression_pb2.RegressionResponse()
    _fill_model_spec(response.model_spec, servable, name)
    for value in values.reshape(-1):
        response.result.regressions.add(value=float(value))
    return response


def _fill_model_spec(model_spec, servable: Servable, signature_name: str) -> None:
    model_spec.name = servable.model_name
    model_spec.version.value = servable.version
    model_spec.signature_name = signature_name


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
