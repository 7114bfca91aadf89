"""numpy <-> tensorflow.TensorProto, by hand (no TensorFlow), shared by client and server.

Both wire forms are understood, with TensorFlow's own rules (`Tensor::FromProto`):
- `tensor_content`: raw little-endian bytes; its length must be exactly elements * itemsize.
- typed `*_val` fields (what `tf.make_tensor_proto` writes for small tensors and what TF Serving
  replies with): no values -> zeros; fewer values than elements -> the last value repeats;
  more values than elements -> an error.
Every malformed tensor raises `TensorDecodeError` (a ValueError) naming the tensor and the
reason, which the server turns into INVALID_ARGUMENT.

`float_val` and `double_val` (fixed-width, packed on the wire) are written and read as whole
byte runs: protobuf's Python API hands a repeated field over one Python number at a time, which
cost 0.27 s to write and 0.38 s to read the 2 M floats of 8 heat maps at 512x512 (the server
replies with typed values, as TF Serving does); as bytes both take ~10 ms. The messages are the
same (tests/unit/test_tensor_codec.py).
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from serving.api.protos import tensor_pb2, tensor_shape_pb2, types_pb2

DT = types_pb2.DataType
_LENGTH_DELIMITED = 2  # protobuf wire type of a packed repeated field
# Typed fields written and read as bytes: DataType -> the field's number in TensorProto.
_PACKED_FIXED = {DT.DT_FLOAT: tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name["float_val"].number,
                 DT.DT_DOUBLE: tensor_pb2.TensorProto.DESCRIPTOR.fields_by_name[
                     "double_val"].number}
_WIRE_READ_MIN = 256  # fewer values: the plain API is as fast as serializing

# DataType -> (numpy dtype, typed value field or None where only tensor_content applies)
_DTYPES: dict[int, tuple[np.dtype, str]] = {
    DT.DT_FLOAT: (np.dtype("<f4"), "float_val"),
    DT.DT_DOUBLE: (np.dtype("<f8"), "double_val"),
    DT.DT_HALF: (np.dtype("<f2"), "half_val"),
    DT.DT_INT8: (np.dtype("i1"), "int_val"),
    DT.DT_INT16: (np.dtype("<i2"), "int_val"),
    DT.DT_INT32: (np.dtype("<i4"), "int_val"),
    DT.DT_INT64: (np.dtype("<i8"), "int64_val"),
    DT.DT_UINT8: (np.dtype("u1"), "int_val"),
    DT.DT_UINT16: (np.dtype("<u2"), "int_val"),
    DT.DT_UINT32: (np.dtype("<u4"), "uint32_val"),
    DT.DT_UINT64: (np.dtype("<u8"), "uint64_val"),
    DT.DT_BOOL: (np.dtype("?"), "bool_val"),
    DT.DT_STRING: (np.dtype(object), "string_val"),
}

# Refuse tensors whose decoded size would dwarf any message we accept: a few bytes of typed
# values may legally describe a huge shape (last value repeats), a memory-exhaustion vector.
DEFAULT_MAX_DECODED_BYTES = 1 << 30


class TensorDecodeError(ValueError):
    """A TensorProto that cannot be turned into an array; the message says which and why."""


def dtype_name(code: int) -> str:
    """'uint8' for DT_UINT8: the spelling TensorFlow uses in its error messages."""
    name = DT.Name(code) if code in DT.values() else f"dtype#{code}"
    return name.removeprefix("DT_").lower()


def numpy_dtype(code: int) -> np.dtype:
    """The numpy dtype of a DataType; TensorDecodeError if serving does not support it."""
    if code not in _DTYPES:
        raise TensorDecodeError(f"unsupported dtype {dtype_name(code)}")
    return _DTYPES[code][0]


def datatype_of(array: np.ndarray) -> int:
    """DataType code of a numpy array (bytes/str object arrays are DT_STRING)."""
    if array.dtype.kind in "OSU":
        return DT.DT_STRING
    for code, (dtype, _) in _DTYPES.items():
        if (dtype.kind, dtype.itemsize) == (array.dtype.kind, array.dtype.itemsize):
            return code
    raise TypeError(f"no TensorFlow dtype for numpy {array.dtype}")


def shape_proto(shape: tuple[int, ...]) -> tensor_shape_pb2.TensorShapeProto:
    proto = tensor_shape_pb2.TensorShapeProto()
    for size in shape:
        proto.dim.add(size=int(size))
    return proto


def shape_of(proto: tensor_shape_pb2.TensorShapeProto) -> tuple[int, ...] | None:
    """Dims of a shape proto, -1 for unknown sizes; None for unknown rank."""
    if proto.unknown_rank:
        return None
    return tuple(int(dim.size) for dim in proto.dim)


def to_tensor_proto(array: np.ndarray, *, typed_values: bool = False,
                    into: tensor_pb2.TensorProto | None = None) -> tensor_pb2.TensorProto:
    """Encode an array. Numbers go as `tensor_content` (one memcpy) unless typed_values=True.
    `into`: an empty TensorProto to fill in place (a reply's map entry: no copy of the values)."""
    array = np.asarray(array)
    code = datatype_of(array)
    proto = into if into is not None else tensor_pb2.TensorProto()
    proto.dtype = code
    proto.tensor_shape.CopyFrom(shape_proto(array.shape))
    if code == DT.DT_STRING:
        proto.string_val.extend(_as_bytes(value) for value in array.reshape(-1))
        return proto
    wire_dtype, field = _DTYPES[code]
    if not typed_values:
        proto.tensor_content = np.ascontiguousarray(array, dtype=wire_dtype).tobytes()
        return proto
    flat = array.reshape(-1)
    if code in _PACKED_FIXED and flat.size:
        data = np.ascontiguousarray(flat, dtype=wire_dtype).tobytes()
        proto.MergeFromString(_varint(_PACKED_FIXED[code] << 3 | _LENGTH_DELIMITED)
                              + _varint(len(data)) + data)
        return proto
    if code == DT.DT_HALF:
        flat = flat.astype(wire_dtype).view(np.uint16)
    getattr(proto, field).extend(flat.tolist())
    return proto


def from_tensor_proto(proto: tensor_pb2.TensorProto, *, name: str = "tensor",
                      max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES) -> np.ndarray:
    """Decode a TensorProto into a numpy array (strings: object array of bytes)."""
    dtype = _checked_dtype(proto, name)
    shape = shape_of(proto.tensor_shape)
    if shape is None or any(size < 0 for size in shape):
        raise TensorDecodeError(f"{name}: shape must be fully defined, got "
                                f"{'unknown rank' if shape is None else list(shape)}")
    count = int(np.prod(shape, dtype=np.int64))
    itemsize = dtype.itemsize if proto.dtype != DT.DT_STRING else 1
    if count * itemsize > max_decoded_bytes:
        raise TensorDecodeError(f"{name}: shape {list(shape)} of {dtype_name(proto.dtype)} "
                                f"exceeds the {max_decoded_bytes} byte limit")
    if proto.tensor_content and proto.dtype != DT.DT_STRING:
        return _from_content(proto.tensor_content, dtype, shape, count, name, proto.dtype)
    return _from_typed_values(proto, dtype, shape, count, name)


def _checked_dtype(proto: tensor_pb2.TensorProto, name: str) -> np.dtype:
    try:
        return numpy_dtype(proto.dtype)
    except TensorDecodeError as error:
        raise TensorDecodeError(f"{name}: {error}") from None


def _from_content(content: bytes, dtype: np.dtype, shape: tuple[int, ...], count: int,
                  name: str, code: int) -> np.ndarray:
    expected = count * dtype.itemsize
    if len(content) != expected:
        raise TensorDecodeError(
            f"{name}: tensor_content has {len(content)} bytes but shape {list(shape)} of "
            f"{dtype_name(code)} needs {expected}")
    return np.frombuffer(content, dtype=dtype).reshape(shape)


def _from_typed_values(proto: tensor_pb2.TensorProto, dtype: np.dtype, shape: tuple[int, ...],
                       count: int, name: str) -> np.ndarray:
    field = _DTYPES[proto.dtype][1]
    values = getattr(proto, field)
    if len(values) > count:
        raise TensorDecodeError(f"{name}: {len(values)} values in {field} for shape "
                                f"{list(shape)} ({count} elements)")
    if proto.dtype == DT.DT_STRING:
        flat = np.empty(count, dtype=object)
        flat[:len(values)] = list(values)
        if len(values) < count:
            flat[len(values):] = values[-1] if len(values) else b""
        return flat.reshape(shape)
    if proto.dtype == DT.DT_HALF:
        flat = np.asarray(values, dtype=np.uint16).view(np.float16)
    elif proto.dtype in _PACKED_FIXED and len(values) >= _WIRE_READ_MIN:
        flat = _fixed_width_values(proto, _PACKED_FIXED[proto.dtype], dtype, len(values))
    else:
        flat = _cast_checked(values, dtype, name, field)
    if len(flat) == 0:
        return np.zeros(shape, dtype=dtype)
    if len(flat) < count:
        flat = np.concatenate([flat, np.full(count - len(flat), flat[-1], dtype=dtype)])
    return flat.reshape(shape)


def _cast_checked(values, dtype: np.dtype, name: str, field: str) -> np.ndarray:
    """int_val is int32 on the wire for int8/uint8/int16: out-of-range values are an error."""
    if dtype.kind in "iu" and dtype.itemsize < 4:
        wide = np.asarray(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise TensorDecodeError(f"{name}: {field} holds values outside {dtype} range")
        return wide.astype(dtype)
    return np.asarray(values, dtype=dtype)


def _fixed_width_values(proto: tensor_pb2.TensorProto, number: int, dtype: np.dtype,
                        count: int) -> np.ndarray:
    """Field `number` (fixed32/fixed64 values) of the proto's wire form, as an array: packed
    runs and single values alike, in order, as a parser reads them."""
    runs = [payload for field, wire, payload in _wire_fields(proto.SerializeToString())
            if field == number and wire != 0]
    values = np.frombuffer(b"".join(runs), dtype=dtype)
    if len(values) != count:  # cannot happen for a proto that parsed; never guess
        raise TensorDecodeError(f"field {number}: {len(values)} values on the wire, {count} "
                                "in the message")
    return values


def output_tensors(response) -> dict[str, tensor_pb2.TensorProto]:
    """The `outputs` map (map<string, TensorProto>) of a PredictResponse, read from its wire
    form. With protobuf's C++ runtime the first access to a parsed message's map copies every
    entry value by value (80 ms for 8 heat maps at 512x512); this reads the same entries in
    ~10 ms, a later entry for a key winning as in protobuf's parser."""
    number = response.DESCRIPTOR.fields_by_name["outputs"].number
    found: dict[str, tensor_pb2.TensorProto] = {}
    for field, wire, entry in _wire_fields(response.SerializeToString()):
        if field != number or wire != _LENGTH_DELIMITED:
            continue
        key, value = "", tensor_pb2.TensorProto()
        for entry_field, entry_wire, payload in _wire_fields(entry):
            if entry_wire != _LENGTH_DELIMITED:
                continue
            if entry_field == 1:
                key = bytes(payload).decode("utf-8")
            elif entry_field == 2:
                value.MergeFromString(bytes(payload))
        found[key] = value
    return found


def _wire_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, memoryview | None]]:
    """(field number, wire type, payload) of each field of a serialized message, in order;
    the payload is the bytes of a length-delimited or fixed-width field, None for a varint."""
    data = memoryview(data)
    position = 0
    while position < len(data):
        key, position = _read_varint(data, position)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, position = _read_varint(data, position)
            yield field, wire, None
            continue
        if wire == _LENGTH_DELIMITED:
            length, position = _read_varint(data, position)
        elif wire in (1, 5):  # fixed64, fixed32
            length = 8 if wire == 1 else 4
        else:
            raise TensorDecodeError(f"unexpected wire type {wire} in a message")
        yield field, wire, data[position:position + length]
        position += length


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def _read_varint(data: memoryview, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"string tensors hold bytes or str, got {type(value).__name__}")
