"""The tf.Example JSON of :classify and :regress, in and out (util/json_tensor.cc).

Request: `{"signature_name": ..., "context": {feature: value}, "examples": [{feature: value |
[values]}, ...]}`; a JSON string is a bytes feature, `{"b64": ...}` bytes, a float a float
feature, an integer or bool an int64 feature. Reply: `{"results": [[[label, score], ...], ...]}`
for classify, `{"results": [value, ...]}` for regress.
"""
from __future__ import annotations

import json

import numpy as np

from serving.api.errors import invalid_argument
from serving.api.protos import example_pb2, feature_pb2
from serving.server.rest_json import (B64, CONTEXT, EXAMPLES, RESULTS, _is_b64, _json_type,
                                      _short, decode_b64)
from serving.server.rest_reply import float_text


def examples_input(doc: dict, request_input) -> None:
    """FillClassifyRegressRequestFromJson: `examples` (+ optional `context`) -> Input."""
    if CONTEXT in doc:
        _fill_example(doc[CONTEXT], request_input.example_list_with_context.context)
    if EXAMPLES not in doc:
        raise invalid_argument(f"JSON Value: {_short(doc)} When method is classify, key "
                               f"'{EXAMPLES}' is expected and was not found")
    examples = doc[EXAMPLES]
    if not isinstance(examples, list):
        raise invalid_argument(f"JSON Value: {_short(doc)} Expecting '{EXAMPLES}' value to be "
                               "an list/array")
    if not examples:
        raise invalid_argument(f"JSON Value: {_short(doc)} '{EXAMPLES}' value is an empty array")
    target = (request_input.example_list_with_context.examples if CONTEXT in doc
              else request_input.example_list.examples)
    for value in examples:
        _fill_example(value, target.add())


def _fill_example(value, example: example_pb2.Example) -> None:
    if not isinstance(value, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON {_json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_feature_value(item, name, feature)
        example.features.feature[name].CopyFrom(feature)


def _add_feature_value(value, name: str, feature: feature_pb2.Feature) -> None:
    if isinstance(value, bool):
        kind, add = "int64_list", lambda: feature.int64_list.value.append(int(value))
    elif isinstance(value, str):
        kind, add = "bytes_list", lambda: feature.bytes_list.value.append(value.encode("utf-8"))
    elif _is_b64(value):
        kind, add = "bytes_list", lambda: feature.bytes_list.value.append(decode_b64(value[B64]))
    elif isinstance(value, float):
        kind, add = "float_list", lambda: feature.float_list.value.append(value)
    elif isinstance(value, int):
        if value >= 1 << 63:
            raise invalid_argument(f"Feature: {name} has uint64 element. Only int64 is supported.")
        kind, add = "int64_list", lambda: feature.int64_list.value.append(value)
    else:
        raise invalid_argument(f"Feature: {name} has element with unexpected JSON type: "
                               f"{_json_type(value)}")
    current = feature.WhichOneof("kind")
    if current not in (None, kind):
        raise invalid_argument(f"Unexpected element type in feature: {name} expecting type: "
                               f"{current.removesuffix('_list')}")
    add()


def classification_json(result) -> str:
    """MakeJsonFromClassificationResult: [[label, score], ...] per example."""
    if not result.classifications:
        raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
    rows = ["[" + ", ".join(f"[{json.dumps(c.label)}, {float_text(np.float32(c.score))}]"
                            for c in classes.classes) + "]"
            for classes in result.classifications]
    return f'{{"{RESULTS}": [' + ", ".join(rows) + "]}"


def regression_json(result) -> str:
    if not result.regressions:
        raise invalid_argument("Cannot convert empty RegressionResults to JSON")
    values = ", ".join(float_text(np.float32(r.value)) for r in result.regressions)
    return f'{{"{RESULTS}": [{values}]}}'
