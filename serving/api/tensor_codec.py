"""numpy <-> tensorflow.TensorProto, by hand (no TensorFlow), shared by client and server.

Both wire forms are understood, with TensorFlow's own rules (`Tensor::FromProto`):
- `tensor_content`: raw little-endian bytes; its length must be exactly elements * itemsize.
- typed `*_val` fields (what `tf.make_tensor_proto` writes for small tensors and what TF Serving
  replies with): no values -> zeros; fewer values than elements -> the last value repeats;
  more values than elements -> an error.
Every malformed tensor raises `TensorDecodeError` (a ValueError) naming the tensor and the
reason, which the server turns into INVALID_ARGUMENT.
"""
from __future__ import annotations

import numpy as np

from serving.api.protos import tensor_pb2, tensor_shape_pb2, types_pb2

DT = types_pb2.DataType

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


def to_tensor_proto(array: np.ndarray, *, typed_values: bool = False) -> tensor_pb2.TensorProto:
    """Encode an array. Numbers go as `tensor_content` (one memcpy) unless typed_values=True."""
    array = np.asarray(array)
    code = datatype_of(array)
    proto = tensor_pb2.TensorProto(dtype=code, tensor_shape=shape_proto(array.shape))
    if code == DT.DT_STRING:
        proto.string_val.extend(_as_bytes(value) for value in array.reshape(-1))
        return proto
    wire_dtype, field = _DTYPES[code]
    if not typed_values:
        proto.tensor_content = np.ascontiguousarray(array, dtype=wire_dtype).tobytes()
        return proto
    flat = array.reshape(-1)
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


def _as_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"string tensors hold bytes or str, got {type(value).__name__}")
