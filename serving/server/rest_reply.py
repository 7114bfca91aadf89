"""TF Serving's JSON replies to :predict and error bodies (tensorflow_serving/util/json_tensor.cc).

- `{"predictions": [...]}` for a row-format request (one entry per batch item; objects when
  there are several outputs), `{"outputs": ...}` for a columnar one (one value, or an object);
- floats as WriteDecimal writes them: six significant digits when that round-trips in the
  value's type, else max_digits10; `.0` on whole numbers; `NaN`, `Infinity`, `-Infinity`;
- strings as JSON strings, except outputs named `*_bytes`: `{"b64": ...}`;
- errors: `{"error": "<message>"}` (MakeJsonFromStatus).
"""
from __future__ import annotations

import base64
import json
import math

import numpy as np

from serving.api.errors import invalid_argument
from serving.server.rest_json import B64, BYTES_SUFFIX, OUTPUTS, PREDICTIONS, JsonFormat


def outputs_json(outputs: dict[str, np.ndarray], form: JsonFormat) -> str:
    """MakeJsonFromTensors: `predictions` (row) or `outputs` (columnar)."""
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    if form is JsonFormat.COLUMNAR:
        if len(outputs) == 1:
            (name, array), = outputs.items()
            return f'{{"{OUTPUTS}": {_values(array, name)}}}'
        body = ", ".join(f"{json.dumps(name)}: {_values(array, name)}"
                         for name, array in outputs.items())
        return f'{{"{OUTPUTS}": {{{body}}}}}'
    batch = _batch_size(outputs)
    rows = []
    for index in range(batch):
        if len(outputs) == 1:
            (name, array), = outputs.items()
            rows.append(_values(array[index], name))
        else:
            rows.append("{" + ", ".join(f"{json.dumps(name)}: {_values(array[index], name)}"
                                        for name, array in outputs.items()) + "}")
    return f'{{"{PREDICTIONS}": [' + ", ".join(rows) + "]}"


def _batch_size(outputs: dict[str, np.ndarray]) -> int:
    batch = 0
    for name, array in outputs.items():
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if array.shape[0] < 1:
            raise invalid_argument(f"Tensor name: {name} has invalid batch size: "
                                   f"{array.shape[0]}")
        if batch and batch != array.shape[0]:
            raise invalid_argument(f"Tensor name: {name} has inconsistent batch size: "
                                   f"{array.shape[0]} expecting: {batch}")
        batch = array.shape[0]
    return batch


def _values(array: np.ndarray, name: str) -> str:
    """Nested JSON lists of an array's values, written as TF Serving writes each type."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        write = float_text
    elif array.dtype.kind == "b":
        write = lambda v: "true" if v else "false"  # noqa: E731
    elif array.dtype.kind in "iu":
        write = lambda v: str(int(v))  # noqa: E731
    elif name.endswith(BYTES_SUFFIX):
        write = lambda v: json.dumps(  # noqa: E731
            {B64: base64.b64encode(_bytes(v)).decode("ascii")})
    else:
        write = lambda v: json.dumps(_bytes(v).decode("utf-8", "replace"))  # noqa: E731

    def nested(values, depth: int) -> str:
        if depth == array.ndim:
            return write(values)
        return "[" + ", ".join(nested(child, depth + 1) for child in values) + "]"
    return nested(array, 0)


def float_text(value) -> str:
    """WriteDecimal: %g (six digits) when it round-trips in the value's type, else
    max_digits10; '.0' appended to whole numbers; NaN / Infinity / -Infinity."""
    kind = type(value) if isinstance(value, np.floating) else np.float64
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "-Infinity" if number < 0 else "Infinity"
    text = f"{number:g}"
    if kind(text) != kind(value):
        text = f"{number:.{9 if kind == np.float32 else 17}g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def error_json(message: str) -> str:
    """MakeJsonFromStatus: {"error": "<message>"}."""
    return json.dumps({"error": message}, indent=4)


def _bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")
