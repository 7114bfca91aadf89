"""The REST API's fast paths give the standard library's answers (serving/server/rest_json.py).

pybase64 replaced base64.b64decode(validate=True), and a comma count lets a body with no large
integer array skip rest_arrays' scan, for speed (bench/serving.py); these tests hold both to the
old answers and refusals on odd inputs. (orjson was measured too and left out: 0.3-0.8 ms faster
on a b64 body, but it reads an integer over 64 bits as a float where json.loads keeps it exact:
the 18446744073709551616 case below.)
"""
from __future__ import annotations

import base64
import binascii
import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from serving.api.errors import ServingError
from serving.server import rest_arrays, rest_json


def stdlib_b64(text: str) -> bytes | None:
    """The decoder before pybase64: None where it refused."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def ours_b64(text: str) -> bytes | None:
    try:
        return rest_json.decode_b64(text)
    except ServingError as error:
        assert error.details == "Unable to base64 decode"
        return None


@pytest.mark.parametrize("text", [
    "", "=", "==", "===", "A", "AA", "AA=", "AA==", "AA===", "AAA=", "AAAA", "AA==AA==", "A=A=",
    "AB\n", " AB ", "A B", "é", "AB-_", "AB+/", "AB-/", "QQ", "QR", "QR==", "QQ==\x00", "AAAA====",
    base64.b64encode(bytes(range(256))).decode(), base64.urlsafe_b64encode(b"\xfb\xff").decode()])
def test_b64_odd_inputs_as_the_standard_library(text):
    assert ours_b64(text) == stdlib_b64(text)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.text(alphabet="AQgw09+/-_= \n\t.é", max_size=24))
def test_b64_any_text_as_the_standard_library(text):
    assert ours_b64(text) == stdlib_b64(text)


def _json_only(body: bytes):
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        message = getattr(error, "msg", None) or str(error)
        offset = getattr(error, "pos", getattr(error, "start", 0))
        raise ServingError(rest_json.invalid_argument("x").code,
                           f"JSON Parse error: {message} at offset: {offset}") from None
    except RecursionError:
        raise ServingError(rest_json.invalid_argument("x").code,
                           "JSON Parse error: nesting too deep at offset: 0") from None
    if not isinstance(doc, dict):
        return ("error", "not object")
    return doc


def ours_parse(body: bytes):
    try:
        return rest_json.parse_json(body, arrays=True)
    except ServingError as error:
        if "Is not object" in error.details:
            return ("error", "not object")
        return ("error", error.details)


def same(a, b) -> bool:
    """Equal documents, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and type(a) is type(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("body", [
    b'{"a": 1, "a": 2}', b'{"a": NaN}', b'{"a": Infinity, "b": -Infinity}', b'{"a": 1e400}',
    b'{"a": 18446744073709551616}', b'{"a": 18446744073709551615}', b'{"a": -9223372036854775809}',
    b'{"a": "\\ud800"}', b'{"a": "\\u00e9\\ud83d\\ude00"}', b'{"a": -0.0, "b": 0.1, "c": 1E-7}',
    b' {"a": [1, 2.5, true, null, "x"]} ', b'{"a": 1} x', b'{"a": 1,}', b'[1]', b'"x"',
    b'{"a": "\x01"}', b'\xef\xbb\xbf{"a": 1}', '{"a": "é"}'.encode("utf-16"), b'{"a": "\xff"}',
    b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}", b'{"b64": {"b64": "AAAA"}}'])
def test_json_odd_bodies_as_json_loads(body):
    """parse_json(arrays=True) answers json.loads' document or refusal; the same bodies grown
    past MIN_ARRAY_BYTES with whitespace take the comma check, with the same answers."""
    assert same(ours_parse(body), _expected(body))
    body = body + b" " * rest_arrays.MIN_ARRAY_BYTES
    assert same(ours_parse(body), _expected(body))


def _expected(body: bytes):
    try:
        return _json_only(body)
    except ServingError as error:
        return ("error", error.details)


def test_a_b64_body_parses_as_json_loads():
    """A {"b64": ...} image body takes neither the integer-array path nor json.loads' errors."""
    body = json.dumps({"signature_name": "serving_examples",
                       "instances": [{"b64": base64.b64encode(bytes(range(256)) * 1200).decode()}]
                       }).encode()
    assert rest_arrays.loads_with_arrays(body) is None
    assert rest_json.parse_json(body, arrays=True) == json.loads(body)
