"""TF Serving's JSON request parsing for :predict (tensorflow_serving/util/json_tensor.cc).

The REST API (serving/server/rest.py) turns a JSON body into the same request protos the gRPC
services take, and their replies back into JSON, with TF Serving's rules and error texts:
- predict: `{"signature_name": ..., "instances": [...]}` (row format, one item per batch entry;
  objects when the signature has several inputs) or `{"inputs": ...}` (columnar: one value, or an
  object of named values); replies `{"predictions": [...]}` / `{"outputs": ...}` alike.
- strings: a JSON string, or `{"b64": "..."}` for bytes; outputs named `*_bytes` reply as b64.
Replies are written by serving/server/rest_reply.py, the classify/regress examples format by
serving/server/rest_examples.py.
Numeric tensors become one numpy array (no per-value protobuf work), sent as `tensor_content`.
A :predict body whose `instances` or `inputs` is one large regular integer array (an image as
numbers) is parsed straight into numpy by serving/server/rest_arrays.py, not into Python lists
(0.17 s for a 512x512x1 image); anything else takes json.loads + np.asarray, with the same
answers and error texts. Every refusal is a ServingError (INVALID_ARGUMENT unless TF Serving
says other).
"""
from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from enum import Enum

import numpy as np
import pybase64

from serving.api.errors import ServingError, invalid_argument
from serving.api.protos import meta_graph_pb2, predict_pb2, types_pb2
from serving.api.tensor_codec import dtype_name, numpy_dtype, to_tensor_proto
from serving.server import rest_arrays

DT = types_pb2.DataType
SIGNATURE_KEY, INSTANCES, INPUTS = "signature_name", "instances", "inputs"
PREDICTIONS, OUTPUTS, RESULTS, EXAMPLES, CONTEXT, B64 = (
    "predictions", "outputs", "results", "examples", "context", "b64")
BYTES_SUFFIX = "_bytes"
_INT_TYPES = {DT.DT_INT8, DT.DT_INT16, DT.DT_INT32, DT.DT_INT64, DT.DT_UINT8, DT.DT_UINT16,
              DT.DT_UINT32, DT.DT_UINT64}
_FLOAT_TYPES = {DT.DT_FLOAT, DT.DT_DOUBLE, DT.DT_HALF}


class JsonFormat(Enum):
    """Which request layout a predict call used; the reply uses the same."""
    ROW = "row"
    COLUMNAR = "columnar"


# ---------------------------------------------------------------------------- parsing
def parse_json(body: bytes, *, arrays: bool = False) -> dict:
    """The request document; TF Serving's ParseJson errors (our parser's own wording).
    arrays=True: large integer arrays may come back as rest_arrays.ParsedArray (for
    fill_predict_request only)."""
    if arrays:
        doc = rest_arrays.loads_with_arrays(body)
        if isinstance(doc, dict):
            return doc
    if not body:
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        message = getattr(error, "msg", None) or str(error)
        offset = getattr(error, "pos", getattr(error, "start", 0))
        raise invalid_argument(f"JSON Parse error: {message} at offset: {offset}") from None
    except RecursionError:
        raise invalid_argument("JSON Parse error: nesting too deep at offset: 0") from None
    if not isinstance(doc, dict):
        raise invalid_argument(f"JSON Value: {_short(doc)} Is not object")
    return doc


def signature_name(doc: dict) -> str:
    value = doc.get(SIGNATURE_KEY, "")
    if not isinstance(value, str):
        raise invalid_argument(f"JSON Value: {_short(doc)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return value


def fill_predict_request(doc: dict, request: predict_pb2.PredictRequest,
                         input_infos: Callable[[str], dict[str, meta_graph_pb2.TensorInfo]]
                         ) -> JsonFormat:
    """FillPredictRequestFromJson: inputs from `instances` or `inputs`, typed by the signature."""
    fast = _parsed_array_request(doc, request, input_infos)
    if fast is not None:
        return fast
    doc = rest_arrays.materialize(doc)
    request.model_spec.signature_name = signature_name(doc)
    infos = input_infos(request.model_spec.signature_name)
    if not infos:
        raise invalid_argument("Failed to get input map for signature: "
                               f"{request.model_spec.signature_name or 'DEFAULT'}")
    if INSTANCES in doc and INPUTS in doc:
        raise invalid_argument(f"JSON Value: {_short(doc)} Not formatted correctly expecting "
                               f"only one of '{INPUTS}' or '{INSTANCES}' keys to exist ")
    if INSTANCES in doc:
        instances = doc[INSTANCES]
        if not isinstance(instances, list):
            raise invalid_argument(f"JSON Value: {_short(doc)} Excepting '{INSTANCES}' to be "
                                   "an list/array")
        if not instances:
            raise invalid_argument(f"JSON Value: {_short(doc)} No values in '{INSTANCES}' array")
        arrays = _arrays_from_instances(instances, infos)
        form = JsonFormat.ROW
    elif INPUTS in doc:
        arrays = _arrays_from_inputs(doc[INPUTS], infos)
        form = JsonFormat.COLUMNAR
    else:
        raise invalid_argument("Missing 'inputs' or 'instances' key")
    for name, array in arrays.items():
        request.inputs[name].CopyFrom(to_tensor_proto(array))
        request.inputs[name].dtype = infos[name].dtype  # e.g. uint16 vs half: the signature's
    return form


def _parsed_array_request(doc: dict, request: predict_pb2.PredictRequest, input_infos
                          ) -> JsonFormat | None:
    """The common case on the fast path: one numeric input, given whole as one already parsed
    integer array (`instances` rows or columnar `inputs`). The same steps as the ordinary path
    (np.asarray of the lists would give this very int64 array); None (take the ordinary path,
    which also words any refusal) for anything else."""
    keys = {INSTANCES, INPUTS} & doc.keys()
    if len(keys) != 1 or not isinstance(doc.get(SIGNATURE_KEY, ""), str):
        return None
    key = keys.pop()
    if not isinstance(doc[key], rest_arrays.ParsedArray) or any(
            isinstance(value, rest_arrays.ParsedArray) for name, value in doc.items()
            if name != key):
        return None
    request.model_spec.signature_name = doc.get(SIGNATURE_KEY, "")
    infos = input_infos(request.model_spec.signature_name)
    if len(infos) != 1:
        return None
    (name, info), = infos.items()
    if info.dtype == DT.DT_STRING:
        return None
    try:
        array = _cast(doc[key].array, None, info.dtype, numpy_dtype(info.dtype))
    except (ServingError, ValueError):
        return None
    request.inputs[name].CopyFrom(to_tensor_proto(array))
    request.inputs[name].dtype = info.dtype
    return JsonFormat.ROW if key == INSTANCES else JsonFormat.COLUMNAR


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64), str)


def _is_named_object(value) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _arrays_from_instances(instances: list, infos: dict) -> dict[str, np.ndarray]:
    """Row format: every item one batch entry; items are objects when inputs are named."""
    named = _is_named_object(instances[0])
    if not named and len(infos) > 1:
        raise invalid_argument("instances is a plain list, but expecting list of objects as "
                               "multiple input tensors required as per tensorinfo_map")
    if not named:
        name = next(iter(infos))
        for index, item in enumerate(instances):
            if _is_named_object(item):
                raise invalid_argument(f"Expecting value/list but got object at item {index} "
                                       "of input list")
        return {name: _batched(instances, name, infos[name].dtype, "")}
    columns: dict[str, list] = {name: [] for name in infos}
    for index, item in enumerate(instances):
        if not _is_named_object(item):
            raise invalid_argument(f"Expecting object but got list at item {index} of input "
                                   "list")
        for key in item:
            if key not in infos:
                raise invalid_argument(
                    f"Failed to process element: {index} key: {key} of 'instances' list. "
                    f"Error: INVALID_ARGUMENT: JSON object: does not have named input: {key}")
        if set(item) != set(infos):
            raise invalid_argument(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{_short(item)} must only have keys: {','.join(sorted(infos))}")
        for key, value in item.items():
            columns[key].append(value)
    return {name: _batched(values, name, infos[name].dtype, f" key: {name}")
            for name, values in columns.items()}


def _batched(items: list, name: str, dtype: int, key_text: str) -> np.ndarray:
    """Stack row items into one tensor; items of differing shape are refused as TF Serving."""
    try:
        return tensor_from_json(items, dtype)
    except ServingError:
        first = _json_shape(items[0])
        for index, item in enumerate(items):
            shape = _json_shape(item)
            if shape != first:
                raise invalid_argument(
                    f"Failed to process element: {index}{key_text} of 'instances' list. Error: "
                    f"INVALID_ARGUMENT: Expecting shape {_shape_text(first)} but got: "
                    f"{_shape_text(shape)}") from None
            try:
                tensor_from_json(item, dtype)
            except ServingError as error:
                raise invalid_argument(
                    f"Failed to process element: {index}{key_text} of 'instances' list. "
                    f"Error: INVALID_ARGUMENT: {error.details}") from None
        raise


def _arrays_from_inputs(value, infos: dict) -> dict[str, np.ndarray]:
    """Columnar format: one value for a one-input signature, else an object of named values."""
    if not isinstance(value, dict) or _is_b64(value):
        if len(infos) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as "
                                   "multiple input tensors required as per tensorinfo_map")
        name, info = next(iter(infos.items()))
        return {name: tensor_from_json(value, info.dtype)}
    arrays = {}
    for name, info in infos.items():
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = tensor_from_json(value[name], info.dtype)
    return arrays


def tensor_from_json(value, dtype: int) -> np.ndarray:
    """A dense JSON value (scalar or nested lists) as an array of `dtype`."""
    if dtype == DT.DT_STRING:
        return _string_tensor(value)
    try:
        target = numpy_dtype(dtype)
    except ValueError:
        raise ServingError(_unimplemented(), f"Conversion of JSON Value: {_short(value)} to "
                                             f"type: {dtype_name(dtype)}") from None
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nesting
        raise invalid_argument(_ragged_message(value)) from None
    return _cast(array, value, dtype, target)


def _cast(array: np.ndarray, value, dtype: int, target: np.dtype) -> np.ndarray:
    kind = array.dtype.kind
    wanted = "b" if dtype == DT.DT_BOOL else "iu" if dtype in _INT_TYPES else "biuf"
    if dtype in _FLOAT_TYPES:
        wanted = "iuf"
    if kind not in wanted or array.dtype == object:
        raise invalid_argument(_type_message(array, value, wanted, dtype))
    if kind in "iu" and target.kind in "iu":
        info = np.iinfo(target)
        if array.size and (array.min() < info.min or array.max() > info.max):
            offender = int(array.max() if array.max() > info.max else array.min())
            raise invalid_argument(f"JSON Value: {offender} is out of range for type: "
                                   f"{dtype_name(dtype)}")
    if dtype in (DT.DT_FLOAT, DT.DT_HALF) and kind == "f":
        finite = array[np.isfinite(array)]
        limit = np.finfo(target).max
        if finite.size and np.abs(finite).max() > limit:
            raise invalid_argument(f"Cannot convert JSON value: {float(np.abs(finite).max())} "
                                   f"to {dtype_name(dtype)} without loss of precision.")
    return array.astype(target, copy=False)


def _string_tensor(value) -> np.ndarray:
    """Strings and {"b64": ...} objects, at one nesting depth (TF Serving's FillTensorProto)."""
    shape = _json_shape(value)
    flat: list[bytes] = []

    def walk(node, level: int):
        if isinstance(node, list):
            if level >= len(shape):
                raise invalid_argument(f"Encountered list at unexpected level: {level} "
                                       f"expected < {len(shape)}")
            if len(node) != shape[level]:
                raise invalid_argument(f"Encountered list at unexpected size: {len(node)} at "
                                       f"level: {level} expected size: {shape[level]}")
            for child in node:
                walk(child, level + 1)
            return
        if level != len(shape):
            raise invalid_argument(f"JSON Value: {_short(node)} found at incorrect level: "
                                   f"{level + 1} in the JSON DOM. Expected at level: {len(shape)}")
        flat.append(_string_value(node))

    walk(value, 0)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def _string_value(node) -> bytes:
    if isinstance(node, str):
        return node.encode("utf-8")
    if isinstance(node, dict):
        if not _is_b64(node):
            raise invalid_argument(f"JSON Value: {_short(node)} not formatted correctly for "
                                   "base64 data")
        return decode_b64(node[B64])
    raise invalid_argument(f"JSON Value: {_short(node)} Type: {_json_type(node)} is not of "
                           "expected type: string")


def decode_b64(text: str) -> bytes:
    """absl::Base64Unescape accepts standard and web-safe alphabets, padding optional.
    pybase64 decodes and validates in C: the standard library's validate=True runs a regular
    expression over the whole text (2 ms of the 2.3 ms for a 512^2 image's tf.Example);
    tests/unit/test_rest_decoding.py checks both agree."""
    try:
        cleaned = text.strip()  # each step below copies the text only when it has to change it
        if "-" in cleaned or "_" in cleaned:
            cleaned = cleaned.replace("-", "+").replace("_", "/")
        if len(cleaned) % 4:
            cleaned += "=" * (-len(cleaned) % 4)
        return pybase64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _json_shape(value) -> list[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _shape_text(shape: list[int]) -> str:
    return "[" + ",".join(str(size) for size in shape) + "]"


def _json_type(value) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def _short(value, limit: int = 200) -> str:
    """A JSON value for an error message, cut short (request data may be large or private)."""
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[:limit] + "..."


def _first_leaf(value):
    while isinstance(value, list) and value:
        value = value[0]
    return value


def _ragged_message(value) -> str:
    shape = _json_shape(value)
    stack = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, list):
            if level >= len(shape):
                return f"Encountered list at unexpected level: {level} expected < {len(shape)}"
            if len(node) != shape[level]:
                return (f"Encountered list at unexpected size: {len(node)} at level: {level} "
                        f"expected size: {shape[level]}")
            stack.extend((child, level + 1) for child in node)
        elif level != len(shape):
            return (f"JSON Value: {_short(node)} found at incorrect level: {level + 1} in the "
                    f"JSON DOM. Expected at level: {len(shape)}")
    return "Encountered list at unexpected size"


def _type_message(array: np.ndarray, value, wanted: str, dtype: int) -> str:
    offender = _first_leaf(value)
    if array.dtype != object and array.size:
        flat = array.reshape(-1)
        bad = [v for v in flat[:4096].tolist() if not _kind_ok(v, wanted)]
        offender = bad[0] if bad else flat[0].item()
    return (f"JSON Value: {_short(offender)} Type: {_json_type(offender)} is not of expected "
            f"type: {dtype_name(dtype)}")


def _kind_ok(value, wanted: str) -> bool:
    if isinstance(value, bool):
        return "b" in wanted
    if isinstance(value, int):
        return "i" in wanted
    if isinstance(value, float):
        return "f" in wanted
    return False


def _unimplemented():
    import grpc
    return grpc.StatusCode.UNIMPLEMENTED
