"""Large regular integer arrays in a REST body, parsed straight into numpy.

A 512x512x1 image sent as TF Serving's row JSON is about 1 MB of text: 262,144 numbers, each in
its own one-element list. `json.loads` builds every one of those lists and ints, and
`np.asarray` walks them all again: about 0.17 s per image, 60-90x the model call. TF Serving's
C++ parser fills the tensor as it reads; this does the same job in numpy's C code:

1. every large run of the body that can only be an array of integers (`[`, `]`, digits, `-`,
   `,`, whitespace) is found by one regular expression over the raw bytes;
2. it is accepted only when it is exactly a JSON array value that `np.asarray(json.loads(...))`
   would turn into an int64 array: regular (all lists of one level have one length), no empty
   list, every number a valid JSON integer of at most 18 digits (so it fits int64 as
   np.asarray would type it), one number between each pair of separators;
3. accepted runs are swapped for unique placeholder strings, the rest of the document (now
   small) goes through `json.loads`, and each placeholder must come back as a whole value, once:
   a run inside a JSON string, or any other surprise, makes the whole body take the ordinary
   path instead.

The result is the document with those arrays as `ParsedArray`. Anything not accepted (floats,
ragged lists, huge or malformed numbers, small arrays) stays text for `json.loads`, so answers
and error texts are those of the ordinary path; tests/unit/test_rest_arrays.py checks equality
with it on odd inputs.
"""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import numpy as np

MIN_ARRAY_BYTES = 4096  # smaller arrays cost json.loads little; they stay text
# A body with fewer commas holds no array of more numbers than this: json.loads parses it fast
# whatever its size (a {"b64": ...} image is 350 kB of text and no comma inside the string),
# and looking for that many commas (at most MIN_ARRAY_ITEMS - 1 memchr calls: ~5 us on such a
# body, where bytes.count walks all of it in ~0.2 ms) spares it the scan below (1.6-3.4 ms).
MIN_ARRAY_ITEMS = 256
MAX_DIGITS = 18  # always fits int64, the type np.asarray gives a list of such ints
# Each byte as its class: d digit 1-9, z zero, ' ' whitespace, ? anything an integer array
# cannot hold; '-', '[', ']', ',' as themselves. Every check below is then a C-speed bytes
# operation (translate, find) over the classes instead of a regular expression per character.
_CLASSES = bytes(ord(b"d") if chr(i) in "123456789" else ord(b"z") if chr(i) == "0" else
                 ord(b" ") if chr(i) in " \t\n\r" else i if chr(i) in "-[]," else ord(b"?")
                 for i in range(256))
_CODE = {name: ord(name) for name in "dz-[],? "}


def _has_commas(body: bytes, count: int) -> bool:
    """At least `count` commas in `body`, found by bytes.find, which stops at the last one."""
    position = -1
    for _ in range(count):
        position = body.find(b",", position + 1)
        if position < 0:
            return False
    return True


@dataclass(frozen=True, eq=False)
class ParsedArray:
    """A JSON array of integers already parsed: the int64 array np.asarray would build."""
    array: np.ndarray

    def to_json(self) -> list:
        """The nested lists json.loads would have returned (Python ints)."""
        return self.array.tolist()


def loads_with_arrays(body: bytes):
    """The JSON document with its large integer arrays as ParsedArray, or None when the body
    has none or anything is unusual (the caller then parses it the ordinary way)."""
    if len(body) < MIN_ARRAY_BYTES or not _has_commas(body, MIN_ARRAY_ITEMS - 1):
        return None
    pieces: list[bytes] = []
    arrays: dict[str, np.ndarray] = {}
    nonce, last = secrets.token_hex(8), 0
    classes = body.translate(_CLASSES)
    for start, end in integer_runs(classes):
        array = parse_integer_array(body[start:end], classes[start:end])
        if array is None:
            continue
        key = f"ndarray-{nonce}-{len(arrays)}"
        arrays[key] = array
        pieces += [body[last:start], b'"', key.encode("ascii"), b'"']
        last = end
    if not arrays:
        return None
    pieces.append(body[last:])
    try:
        doc = json.loads(b"".join(pieces))
    except (ValueError, RecursionError):
        return None
    found: set[str] = set()
    try:
        doc = _substitute(doc, arrays, found)
    except _Unusual:
        return None
    return doc if found == set(arrays) else None


def integer_runs(classes: bytes) -> list[tuple[int, int]]:
    """(start, end) of each stretch of at least MIN_ARRAY_BYTES that holds only an integer
    array's characters (`classes`: the body through _CLASSES), from its first '[' to its
    last ']'. Found with numpy: a base64 string holds ~10^5 short runs of digits."""
    allowed = np.frombuffer(classes, np.uint8) != _CODE["?"]
    padded = np.concatenate(([False], allowed, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[::2], edges[1::2]  # edges: starts and ends, alternating
    runs = []
    for start, end in zip(*np.compress(ends - starts >= MIN_ARRAY_BYTES, [starts, ends], 1)):
        first, last = classes.find(b"[", start, end), classes.rfind(b"]", start, end)
        if 0 <= first < last:
            runs.append((first, last + 1))
    return runs


class _Unusual(Exception):
    """A placeholder seen twice (e.g. as a key and a value): the body takes the ordinary path."""


def _substitute(value, arrays: dict[str, np.ndarray], found: set[str]):
    if isinstance(value, str):
        if value in arrays:
            if value in found:  # the same placeholder twice: cannot be ours
                raise _Unusual()
            found.add(value)
            return ParsedArray(arrays[value])
        return value
    if isinstance(value, list):
        return [_substitute(item, arrays, found) for item in value]
    if isinstance(value, dict):
        if arrays.keys() & value.keys():
            raise _Unusual()
        return {key: _substitute(item, arrays, found) for key, item in value.items()}
    return value


def parse_integer_array(text: bytes, classes: bytes | None = None) -> np.ndarray | None:
    """`np.asarray(json.loads(text))` for a regular JSON array of integers of at most
    MAX_DIGITS digits; None for anything else. `classes`: text through _CLASSES, if known.
    Each rule is a few numpy comparisons over the classes (no per-character Python, no
    regular expression: either costs more than json.loads here)."""
    if classes is None:
        classes = text.translate(_CLASSES)
    if b"?" in classes or not classes.startswith(b"[") or not classes.endswith(b"]"):
        return None
    if b" " in classes:  # whitespace is fine between tokens only: never after a digit or '-'
        codes = np.frombuffer(classes, np.uint8)
        space_after = codes[1:] == _CODE[" "]
        before = codes[:-1]
        if (space_after & ((before == _CODE["d"]) | (before == _CODE["z"])
                           | (before == _CODE["-"]))).any():
            return None
        classes, text = classes.translate(None, b" "), text.translate(None, b" \t\n\r")
    codes = np.frombuffer(classes, np.uint8)
    digit = (codes == _CODE["d"]) | (codes == _CODE["z"])
    minus, opening = codes == _CODE["-"], codes == _CODE["["]
    closing, comma = codes == _CODE["]"], codes == _CODE[","]
    bad = (minus[:-1] & ~digit[1:])                                   # '-' not before a digit
    bad |= digit[:-1] & (minus[1:] | opening[1:])                     # 1- 1[
    bad |= (opening[:-1] | comma[:-1]) & (comma[1:] | closing[1:])    # [] [, ,, ,]
    bad |= closing[:-1] & (digit[1:] | minus[1:] | opening[1:])       # ]1 ]- ][
    if bad.any() or ((codes[1:-1] == _CODE["z"]) & digit[2:] & ~digit[:-2]).any():  # 01
        return None
    if b"d" * (MAX_DIGITS + 1) in classes.replace(b"z", b"d"):
        return None
    shape = regular_shape(classes.translate(None, b"dz-"))
    if shape is None:
        return None
    values = np.fromstring(text.translate(None, b"[]"), dtype=np.int64, sep=",")  # text mode
    if values.size != int(np.prod(shape)):
        return None
    return values.reshape(shape)


def regular_shape(skeleton: bytes) -> tuple[int, ...] | None:
    """The shape of a regular nested list from its brackets and commas (numbers removed):
    read off the first list of each level, then the whole skeleton must be the one that shape
    writes. None when it is not (ragged, unbalanced, trailing text)."""
    depth = len(skeleton) - len(skeleton.lstrip(b"["))
    close = skeleton.find(b"]")
    if depth == 0 or close < depth or skeleton[depth:close].strip(b","):
        return None
    inner = close - depth + 1  # commas + 1
    shape = [inner]
    written = b"[" + b"," * (inner - 1) + b"]"
    for level in range(depth - 2, -1, -1):
        position, count = level + 1, 0
        while skeleton.startswith(written, position):
            count += 1
            position += len(written)
            if skeleton[position:position + 1] != b",":
                break
            position += 1
        if count == 0:
            return None
        shape.insert(0, count)
        written = b"[" + b",".join([written] * count) + b"]"
    return tuple(shape) if skeleton == written else None


def materialize(value):
    """The document as json.loads would have returned it (ParsedArray back to lists)."""
    if isinstance(value, ParsedArray):
        return value.to_json()
    if isinstance(value, list):
        return [materialize(item) for item in value]
    if isinstance(value, dict):
        return {key: materialize(item) for key, item in value.items()}
    return value
