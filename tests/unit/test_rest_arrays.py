"""The REST fast path for large integer arrays (serving/server/rest_arrays.py) against the slow
path it replaces (json.loads + np.asarray, serving/server/rest_json.py): on every body either it
steps aside (None: the slow path runs) or gives exactly what the slow path gives, and a :predict
request built from it is the same request, or the same refusal."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.api.errors import ServingError
from serving.api.protos import meta_graph_pb2, predict_pb2, types_pb2
from serving.server import rest_arrays, rest_json

DT = types_pb2.DataType
BIG = 2000  # numbers per array: over MIN_ARRAY_BYTES, so the fast path is tried


def image_text(values=None, separator=", ") -> str:
    """A [1, BIG, 1] array as json.dumps writes it (or with another separator)."""
    values = list(range(BIG)) if values is None else values
    return "[[" + separator.join(f"[{v}]" for v in values) + "]]"


def same_as_slow_path(body: bytes) -> object:
    """loads_with_arrays(body) is None, or equals json.loads(body) once materialized (each
    ParsedArray being exactly np.asarray of its lists); returns the fast result."""
    fast = rest_arrays.loads_with_arrays(body)
    if fast is None:
        return None
    slow = json.loads(body)
    assert rest_arrays.materialize(fast) == slow
    check_arrays(fast, slow)
    return fast


def check_arrays(fast, slow) -> None:
    if isinstance(fast, rest_arrays.ParsedArray):
        expected = np.asarray(slow)
        assert fast.array.dtype == expected.dtype and fast.array.shape == expected.shape
        assert np.array_equal(fast.array, expected)
    elif isinstance(fast, list):
        for fast_item, slow_item in zip(fast, slow, strict=True):
            check_arrays(fast_item, slow_item)
    elif isinstance(fast, dict):
        for key in fast:
            check_arrays(fast[key], slow[key])


@pytest.mark.parametrize("text", [
    image_text(),                                          # json.dumps
    image_text(separator=","),                             # compact (orjson)
    image_text(separator=" ,\n\t "),                       # whitespace between tokens
    image_text([-v for v in range(BIG)]),                  # negatives, -0
    "[" + ",".join(["123456789012345678"] * BIG) + "]",    # 18 digits: int64
    "[" + ",".join(["-12345678901234567"] * BIG) + "]",
    "[[" + "], [".join(["1, 2, 3"] * BIG) + "]]",           # [BIG, 3]
])
def test_regular_integer_arrays_take_the_fast_path(text):
    body = ('{"signature_name": "x", "instances": ' + text + "}").encode()
    fast = same_as_slow_path(body)
    assert isinstance(fast["instances"], rest_arrays.ParsedArray)


@pytest.mark.parametrize("text", [
    image_text([0.5] + list(range(BIG - 1))),              # a float
    image_text(["1e3"] + list(range(BIG - 1))),            # exponent
    image_text(["true"] + list(range(BIG - 1))),           # a bool among ints
    image_text(["null"] + list(range(BIG - 1))),
    image_text(["1234567890123456789"] + list(range(BIG - 1))),  # 19 digits: may be uint64
    image_text(["01"] + list(range(BIG - 1))),             # leading zero: invalid JSON
    image_text(["-01"] + list(range(BIG - 1))),
    image_text(["--1"] + list(range(BIG - 1))),
    image_text(["1-2"] + list(range(BIG - 1))),
    image_text(["1 2"] + list(range(BIG - 1))),            # two numbers, no comma
    image_text(["- 1"] + list(range(BIG - 1))),
    image_text(["1 "] + list(range(BIG - 1))),             # allowed by JSON, not by the fast path
    image_text([""] + list(range(BIG - 1))),               # empty list []
    "[" + ",".join(["1"] * BIG) + ",]",                    # trailing comma
    "[" + ",".join(["1"] * BIG) + ",,1]",
    "[[" + "],[".join(["1"] * BIG) + "],[1,2]]",           # ragged
    "[[" + "],[".join(["1"] * BIG) + "]",                  # unbalanced
    "[[" + "],[".join(["1"] * BIG) + "]]]",
    "[[1]" + ",[1]" * BIG + "[1]]",                        # missing comma between lists
    "[[1]" + ",[1]" * BIG + ",1]",                         # list and number mixed
])
def test_anything_else_is_left_to_the_slow_path(text):
    body = ('{"instances": ' + text + "}").encode()
    fast = same_as_slow_path(body)
    assert fast is None or not isinstance(fast["instances"], rest_arrays.ParsedArray)


@pytest.mark.parametrize("body", [
    '{"instances": "' + image_text() + '"}',                # inside a string
    '{"a": "x' + image_text() + 'y", "b": 1}',
    '{"a": "\\"' + image_text() + '"}',
    '{' + image_text() + ': 1}',                           # as a key: invalid JSON
    '{"instances": ' + image_text() + ', }',                # invalid JSON elsewhere
    '{"instances": ' + image_text() + '} trailing',
    '[' + image_text() + ']',                              # not an object
])
def test_arrays_in_strings_or_invalid_documents_are_not_taken(body):
    body = body.encode()
    fast = rest_arrays.loads_with_arrays(body)
    try:
        slow = json.loads(body)
    except ValueError:
        assert fast is None or not isinstance(fast, dict)
        return
    if fast is not None:
        assert rest_arrays.materialize(fast) == slow


@pytest.mark.parametrize("items, taken", [(rest_arrays.MIN_ARRAY_ITEMS, True),
                                          (rest_arrays.MIN_ARRAY_ITEMS - 1, False)])
def test_an_array_needs_min_array_items_numbers(items, taken):
    """The commas rule: MIN_ARRAY_ITEMS numbers (long enough to pass MIN_ARRAY_BYTES) are
    parsed here; one fewer is left to json.loads, however long the body."""
    numbers = "[" + ",".join(["123456789012345678"] * items) + "]"
    assert len(numbers) > rest_arrays.MIN_ARRAY_BYTES
    fast = same_as_slow_path(numbers.encode())
    assert isinstance(fast, rest_arrays.ParsedArray) is taken


def test_several_arrays_and_small_ones_in_one_document():
    body = ('{"inputs": {"a": ' + image_text() + ', "b": [1, 2], "c": '
            + image_text(separator=",") + '}, "s": "[1,2]"}').encode()
    fast = same_as_slow_path(body)
    assert isinstance(fast["inputs"]["a"], rest_arrays.ParsedArray)
    assert fast["inputs"]["b"] == [1, 2] and fast["s"] == "[1,2]"


@settings(max_examples=120, deadline=None, database=None, derandomize=True)
@given(position=st.integers(0, 10_000), edit=st.sampled_from(
    ["", " ", "-", "0", "1", ",", "[", "]", ".", "e", "\n", "x", "\"", "00"]),
    delete=st.integers(0, 2))
def test_one_edit_anywhere_never_changes_the_answer(position, edit, delete):
    """Valid or not after the edit: the fast path gives json.loads's document or steps aside."""
    text = '{"instances": ' + image_text() + "}"
    position %= len(text)
    body = (text[:position] + edit + text[position + delete:]).encode()
    fast = rest_arrays.loads_with_arrays(body)
    if fast is None:
        return
    assert rest_arrays.materialize(fast) == json.loads(body)
    check_arrays(fast, json.loads(body))


# ------------------------------------------------------------------ whole :predict requests
def infos_of(**dtypes):
    return {name: meta_graph_pb2.TensorInfo(name=name, dtype=dtype)
            for name, dtype in dtypes.items()}


def predict(body: bytes, infos: dict, fast: bool):
    request = predict_pb2.PredictRequest()
    try:
        doc = rest_json.parse_json(body, arrays=fast)
        form = rest_json.fill_predict_request(doc, request, lambda name: infos)
    except ServingError as error:
        return ("error", error.code, error.details)
    return ("ok", form, request.SerializeToString(deterministic=True))


@pytest.mark.parametrize("dtype", [DT.DT_UINT8, DT.DT_INT8, DT.DT_INT64, DT.DT_HALF,
                                   DT.DT_BOOL, DT.DT_STRING, DT.DT_COMPLEX64])
@pytest.mark.parametrize("values", [list(range(0, BIG)), [v % 256 for v in range(BIG)],
                                    [-1] + [0] * (BIG - 1)])
@pytest.mark.parametrize("layout", ["instances", "inputs", "both", "named", "bad_signature"])
def test_predict_requests_are_the_same_on_both_paths(dtype, values, layout):
    text = image_text(values)
    body = {"instances": '{"instances": ' + text + "}",
            "inputs": '{"inputs": ' + text + ', "signature_name": ""}',
            "both": '{"instances": ' + text + ', "inputs": ' + text + "}",
            "named": '{"instances": [{"image": ' + text + "}]}",
            "bad_signature": '{"instances": ' + text + ', "signature_name": ' + text + "}",
            }[layout].encode()
    infos = infos_of(image=dtype)
    assert predict(body, infos, fast=True) == predict(body, infos, fast=False)


def test_two_input_signatures_are_refused_alike():
    body = ('{"instances": ' + image_text() + "}").encode()
    infos = infos_of(a=DT.DT_UINT8, b=DT.DT_UINT8)
    assert predict(body, infos, fast=True) == predict(body, infos, fast=False)
    assert predict(body, infos, fast=True)[0] == "error"
