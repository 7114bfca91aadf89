"""Classify, Regress and MultiInference: PredictionService's tf.Example APIs, as TF Serving.

Same checks, order and texts as TF Serving 2.16 (servables/tensorflow/classifier.cc,
regressor.cc, multi_inference.cc, util.cc) with its default, disabled method-name check
(--enable_signature_method_name_check=false): a signature fits Classify when it has exactly one
input, named `inputs`, and one or two outputs among `classes` / `scores`; Regress wants one
input `inputs` and one output `outputs`. Anything else is INVALID_ARGUMENT. The MS model's
signatures (`serving_default`: image -> probability, logit; `serving_examples`: examples ->
the same) are Predict-shaped, so Classify, Regress and MultiInference refuse them, as TF
Serving does: clients use Predict.
"""
from __future__ import annotations

import grpc
import numpy as np
from google.protobuf import text_format
from tensorflow_serving.apis import inference_pb2  # server side: TensorFlow is loaded already

from components.contract import SERVING_DEFAULT
from serving.api.errors import ServingError, invalid_argument
from serving.api.protos import (CLASSIFY_METHOD, REGRESS_METHOD, classification_pb2, input_pb2,
                                meta_graph_pb2, model_pb2, regression_pb2)
from serving.server.servable import Servable

INPUTS, CLASSES, SCORES, OUTPUTS = "inputs", "classes", "scores", "outputs"


# ------------------------------------------------------------------------------ input
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
        raise invalid_argument("Input is empty.")
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return array


# ------------------------------------------------------------------------------ signatures
def _debug_string(signature: meta_graph_pb2.SignatureDef) -> str:
    """SignatureDef::DebugString(): the text format TF Serving puts in its messages."""
    return text_format.MessageToString(signature)


def _signature(servable: Servable, name: str) -> tuple[str, meta_graph_pb2.SignatureDef]:
    name = name or SERVING_DEFAULT
    if name not in servable.signature_defs:
        raise invalid_argument(f"No signature was found with the name: {name}")
    return name, servable.signature_defs[name]


def classification_outputs(signature: meta_graph_pb2.SignatureDef) -> list[str]:
    """PreProcessClassification: the output aliases Classify reads, or INVALID_ARGUMENT."""
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(
            f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if INPUTS not in signature.inputs:
        raise invalid_argument(
            f"No classification inputs found in SignatureDef: {_debug_string(signature)}")
    outputs = [alias for alias in (CLASSES, SCORES) if alias in signature.outputs]
    if not outputs:
        raise invalid_argument(
            'Expected classification signature outputs to contain at least one of "classes" '
            f'or "scores". Signature was: {_debug_string(signature)}')
    return outputs


def regression_outputs(signature: meta_graph_pb2.SignatureDef) -> list[str]:
    """PreProcessRegression: the output alias Regress reads, or INVALID_ARGUMENT."""
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if INPUTS not in signature.inputs:
        raise invalid_argument(
            f"No regression inputs found in SignatureDef: {_debug_string(signature)}")
    if OUTPUTS not in signature.outputs:
        raise invalid_argument(
            f"No regression outputs found in SignatureDef: {_debug_string(signature)}")
    return [OUTPUTS]


# ------------------------------------------------------------------------------ results
def _shape(array: np.ndarray) -> str:
    return "[" + ",".join(str(size) for size in array.shape) + "]"


def classification_result(outputs: dict[str, np.ndarray], num_examples: int,
                          result: classification_pb2.ClassificationResult) -> None:
    """PostProcessClassificationResult: [batch, classes] outputs -> one Classifications each."""
    classes, scores = outputs.get(CLASSES), outputs.get(SCORES)
    for name, tensor in ((CLASSES, classes), (SCORES, scores)):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise invalid_argument("Expected Tensor shape: [batch_size num_classes] but got "
                                   f"{_shape(tensor)}")
        if tensor.shape[0] != num_examples:
            raise invalid_argument(f"Expected {name} output batch size of {num_examples}. "
                                   f"Got: {tensor.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument("Tensors class and score should match in dim_size(1). Got "
                               f"{classes.shape[1]} vs. {scores.shape[1]}")
    num_classes = (classes if classes is not None else scores).shape[1]
    for row in range(num_examples):
        classifications = result.classifications.add()
        for column in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                entry.label = _text(classes[row, column])
            if scores is not None:
                entry.score = float(scores[row, column])


def regression_result(outputs: dict[str, np.ndarray], num_examples: int,
                      result: regression_pb2.RegressionResult) -> None:
    """PostProcessRegressionResult: [batch] or [batch, 1] -> one regression value each."""
    values = np.asarray(outputs[OUTPUTS])
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid_argument("Expected output Tensor shape to be either [batch_size] or "
                               f"[batch_size, 1] but got {_shape(values)}")
    if values.shape[0] != num_examples:
        raise invalid_argument("Input batch size did not match output batch size: "
                               f"{num_examples} vs. {values.shape[0]}")
    for value in values.reshape(-1):
        result.regressions.add(value=float(value))


# ------------------------------------------------------------------------------ the APIs
def classify(servable: Servable, request: classification_pb2.ClassificationRequest
             ) -> classification_pb2.ClassificationResponse:
    name, signature = _signature(servable, request.model_spec.signature_name)
    wanted = classification_outputs(signature)
    examples = serialized_examples(request.input)
    outputs = servable.run(name, {INPUTS: examples})
    response = classification_pb2.ClassificationResponse()
    _fill_model_spec(response.model_spec, servable, name)
    classification_result({alias: outputs[alias] for alias in wanted}, len(examples),
                          response.result)
    return response


def regress(servable: Servable, request: regression_pb2.RegressionRequest
            ) -> regression_pb2.RegressionResponse:
    name, signature = _signature(servable, request.model_spec.signature_name)
    regression_outputs(signature)
    examples = serialized_examples(request.input)
    outputs = servable.run(name, {INPUTS: examples})
    response = regression_pb2.RegressionResponse()
    _fill_model_spec(response.model_spec, servable, name)
    regression_result(outputs, len(examples), response.result)
    return response


def multi_inference_model_spec(request: inference_pb2.MultiInferenceRequest
                               ) -> model_pb2.ModelSpec:
    """The servable is chosen by the first task's ModelSpec (multi_inference_helper.cc)."""
    if request.tasks and request.tasks[0].HasField("model_spec"):
        return request.tasks[0].model_spec
    return model_pb2.ModelSpec()


def multi_inference(servable: Servable, request: inference_pb2.MultiInferenceRequest
                    ) -> inference_pb2.MultiInferenceResponse:
    """TensorFlowMultiInferenceRunner::Infer: validate every task, run the shared input once
    per signature, answer one result per task in request order."""
    signatures = _multi_inference_signatures(servable, request)
    examples = serialized_examples(request.input)
    response = inference_pb2.MultiInferenceResponse()
    for task, name in zip(request.tasks, signatures):
        outputs = servable.run(name, {INPUTS: examples})
        result = response.results.add()
        if task.method_name == CLASSIFY_METHOD:
            classification_result({a: outputs[a] for a in (CLASSES, SCORES) if a in outputs},
                                  len(examples), result.classification_result)
        else:
            regression_result(outputs, len(examples), result.regression_result)
        _fill_model_spec(result.model_spec, servable, name)
    return response


def _multi_inference_signatures(servable: Servable,
                                request: inference_pb2.MultiInferenceRequest) -> list[str]:
    """The checks of Infer's first loop, in its order and with its texts."""
    model_name, input_tensor, seen = "", "", []
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if model_name and task.model_spec.name != model_name:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        model_name = task.model_spec.name
        name = task.model_spec.signature_name or SERVING_DEFAULT
        if name in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {name}")
        seen.append(name)
        if name not in servable.signature_defs:
            raise invalid_argument(f"Requested signature not found in model graph: {name}")
        signature = servable.signature_defs[name]
        if task.method_name == CLASSIFY_METHOD:
            classification_outputs(signature)
        elif task.method_name == REGRESS_METHOD:
            regression_outputs(signature)
        else:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                               f"Unsupported signature method_name: {task.method_name}")
        tensor_name = signature.inputs[INPUTS].name
        if input_tensor and tensor_name != input_tensor:
            raise invalid_argument("Input tensor must be the same for all Signatures.")
        input_tensor = tensor_name
    return seen


def _fill_model_spec(model_spec, servable: Servable, signature_name: str) -> None:
    """MakeModelSpec: name, the signature used (serving_default when none) and version."""
    model_spec.name = servable.model_name
    model_spec.version.value = servable.version
    model_spec.signature_name = signature_name


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
