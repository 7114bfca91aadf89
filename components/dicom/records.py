"""tf.Example records without TensorFlow: the encoder DicomExampleGen writes with, and the one
reader of TFRecord files (gzip or not) for everything that is not training input.

Why not TensorFlow: Beam's multi-processing workers would each import it just to encode
(about 0.6 GB and 10 s per worker on our 2-core machines), and the rollout tool is a client
that must start in a second. The formats are small and frozen: Example -> Features ->
map<string, Feature> -> BytesList / FloatList / Int64List, and TFRecord's framing (length,
masked CRC32C, data, masked CRC32C). The encoder's output is byte-identical to TensorFlow's
deterministic serialization (map keys sorted); tests check encoder and reader against
TensorFlow itself. The Trainer keeps TFX's own reader (TFXIO): that is training input.
"""
from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Mapping, Union

FeatureValue = Union[bytes, str, int]
FeatureValues = Union[list[bytes], list[int], list[float]]

_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5
# Field numbers in tensorflow/core/example/{example,feature}.proto
_EXAMPLE_FEATURES = 1
_FEATURES_MAP = 1
_MAP_KEY, _MAP_VALUE = 1, 2
_FEATURE_BYTES_LIST, _FEATURE_FLOAT_LIST, _FEATURE_INT64_LIST = 1, 2, 3
_LIST_VALUE = 1


_ONE_BYTE = [bytes((value,)) for value in range(128)]


def _varint(value: int) -> bytes:
    """Base-128 varint; negative int64 values take ten bytes (two's complement), as in protobuf."""
    if 0 <= value < 128:  # field keys, names, small ints: most varints of an Example
        return _ONE_BYTE[value]
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _key(number: int) -> bytes:
    return _varint(number << 3 | _LENGTH_DELIMITED)


def _feature(value: FeatureValue) -> tuple[bytes, bytes]:
    """A Feature message as (head, payload): payload is a bytes value itself (uncopied), empty
    for an int, so a 256 KiB image is copied once, by encode_example's join."""
    if isinstance(value, bool) or not isinstance(value, (bytes, str, int)):
        raise TypeError(f"feature values must be bytes, str or int, got {type(value).__name__}")
    if isinstance(value, int):
        return _field(_FEATURE_INT64_LIST, _field(_LIST_VALUE, _varint(value))), b""  # packed
    if isinstance(value, str):
        value = value.encode("utf-8")
    list_head = _key(_LIST_VALUE) + _varint(len(value))
    return (_key(_FEATURE_BYTES_LIST) + _varint(len(list_head) + len(value)) + list_head,
            value)


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """One serialized tf.train.Example; each feature holds exactly one value.

    Built as one list of pieces joined once (nesting `_field` calls copied the image bytes at
    every level, six times per slice); the bytes are the same.
    """
    pieces = []
    for name, value in sorted(features.items()):
        head, payload = _feature(value)
        entry = _field(_MAP_KEY, name.encode("utf-8")) + _key(_MAP_VALUE) + _varint(
            len(head) + len(payload)) + head
        pieces += [_key(_FEATURES_MAP) + _varint(len(entry) + len(payload)) + entry, payload]
    length = sum(map(len, pieces))
    return b"".join([_key(_EXAMPLE_FEATURES) + _varint(length), *pieces])


# --- reading ----------------------------------------------------------------------------------

GZIP_MAGIC = b"\x1f\x8b"
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_FLOAT = struct.Struct("<f")
_MASK_DELTA = 0xA282EAD8


class RecordError(ValueError):
    """A TFRecord file or a tf.Example cannot be read; the message names the file and record."""


def tfrecord_files(folder: str | os.PathLike) -> list[Path]:
    """A file, or every regular non-hidden file below a folder, in name order.

    An ExampleGen split folder (`Split-<name>`) holds only its TFRecord shards, so no name
    pattern is assumed: renamed or uncompressed shards are read too.
    """
    root = Path(folder)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder")
    files = sorted(path for path in root.rglob("*") if path.is_file()
                   and not any(part.startswith(".") for part in path.relative_to(root).parts))
    if not files:
        raise FileNotFoundError(f"{root}: no TFRecord files in this folder")
    return files


def _masked_crc(data: bytes) -> int:
    import google_crc32c  # pinned in requirements.in; C implementation

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_tfrecords(path: str | os.PathLike) -> Iterator[bytes]:
    """The records of one TFRecord file (gzip or not, by content), CRCs checked, so a
    truncated or corrupt file is an error rather than a shorter dataset."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == GZIP_MAGIC
    opener = gzip.open if compressed else open
    index = 0
    try:
        with opener(path, "rb") as stream:
            while True:
                header = stream.read(_LENGTH.size)
                if not header:
                    return
                yield _read_record(stream, header, f"{path}: record {index}")
                index += 1
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise RecordError(f"{path}: cannot read record {index}: {error}") from None


def _read_record(stream, header: bytes, where: str) -> bytes:
    length_crc = stream.read(_CRC.size)
    if len(header) < _LENGTH.size or len(length_crc) < _CRC.size:
        raise RecordError(f"{where} is truncated (header)")
    if _CRC.unpack(length_crc)[0] != _masked_crc(header):
        raise RecordError(f"{where}: length CRC mismatch (not a TFRecord file, or corrupt)")
    (length,) = _LENGTH.unpack(header)
    data = stream.read(length)
    data_crc = stream.read(_CRC.size)
    if len(data) < length or len(data_crc) < _CRC.size:
        raise RecordError(f"{where} is truncated (data)")
    if _CRC.unpack(data_crc)[0] != _masked_crc(data):
        raise RecordError(f"{where}: data CRC mismatch (corrupt)")
    return data


def decode_example(data: bytes) -> dict[str, FeatureValues]:
    """A serialized tf.train.Example as {feature name: list of values} (bytes, int or float).

    Raises RecordError when `data` is not a well-formed Example; unknown fields are skipped,
    as protobuf does.
    """
    try:
        example: dict[str, FeatureValues] = {}
        for number, _, features in _fields(data):
            if number != _EXAMPLE_FEATURES:
                continue
            for entry_number, _, entry in _fields(features):
                if entry_number == _FEATURES_MAP:
                    name, values = _decode_map_entry(entry)
                    example[name] = values
        return example
    except (IndexError, TypeError, ValueError, UnicodeDecodeError, struct.error):
        raise RecordError("not a serialized tf.Example") from None


def _decode_map_entry(entry: bytes) -> tuple[str, FeatureValues]:
    name, values = "", []
    for number, _, payload in _fields(entry):
        if number == _MAP_KEY:
            name = payload.decode("utf-8")
        elif number == _MAP_VALUE:
            values = _decode_feature(payload)
    return name, values


def _decode_feature(feature: bytes) -> FeatureValues:
    values: list = []
    for kind, _, value_list in _fields(feature):
        for number, wire_type, value in _fields(value_list):
            if number != _LIST_VALUE:
                continue
            if kind == _FEATURE_BYTES_LIST:
                if wire_type != _LENGTH_DELIMITED:
                    raise ValueError("bad bytes list")
                values.append(value)
            elif kind == _FEATURE_INT64_LIST:
                values.extend(_int64s(value, wire_type))
            elif kind == _FEATURE_FLOAT_LIST:
                values.extend(_floats(value, wire_type))
    return values


def _int64s(value, wire_type: int) -> list[int]:
    """Packed (a run of varints) or not (one varint); negative values are two's complement."""
    if wire_type == _VARINT:
        raw = [value]
    else:
        raw, position = [], 0
        while position < len(value):
            number, position = _read_varint(value, position)
            raw.append(number)
    return [number - (1 << 64) if number >= 1 << 63 else number for number in raw]


def _floats(value: bytes, wire_type: int) -> list[float]:
    """Packed (a run of little-endian float32) or not (one)."""
    if wire_type not in (_FIXED32, _LENGTH_DELIMITED) or len(value) % _FLOAT.size:
        raise ValueError("bad float list")
    return [number for (number,) in _FLOAT.iter_unpack(value)]


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift >= 70:
            raise ValueError("varint too long")


def _fields(message: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of each field: an int for varints, bytes otherwise."""
    position = 0
    while position < len(message):
        key, position = _read_varint(message, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, position = _read_varint(message, position)
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _read_varint(message, position)
            value, position = message[position:position + length], position + length
            if len(value) != length:
                raise ValueError("truncated field")
        elif wire_type in (_FIXED32, _FIXED64):
            size = 4 if wire_type == _FIXED32 else 8
            value, position = message[position:position + size], position + size
            if len(value) != size:
                raise ValueError("truncated field")
        else:
            raise ValueError(f"unsupported wire type {wire_type}")
        yield number, wire_type, value
