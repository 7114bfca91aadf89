"""serving/api/tensor_codec.py's byte-run paths for float_val / double_val give the messages and
arrays that protobuf's own API gives: same wire bytes out, same values in, whatever the wire
form (packed runs, unpacked values, several runs), NaN and infinities included."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serving.api.protos import tensor_pb2, types_pb2
from serving.api.tensor_codec import (TensorDecodeError, _varint, from_tensor_proto,
                                      shape_proto, to_tensor_proto)

FIELDS = {np.dtype("<f4"): ("float_val", types_pb2.DT_FLOAT, 5, 5),  # number, wire type
          np.dtype("<f8"): ("double_val", types_pb2.DT_DOUBLE, 6, 1)}


def api_encoded(array: np.ndarray) -> tensor_pb2.TensorProto:
    """What protobuf's own API writes: the repeated field extended value by value."""
    field, code, _, _ = FIELDS[array.dtype]
    proto = tensor_pb2.TensorProto(dtype=code, tensor_shape=shape_proto(array.shape))
    getattr(proto, field).extend(array.reshape(-1).tolist())
    return proto


arrays = st.sampled_from(sorted(FIELDS, key=str)).flatmap(lambda dtype: hnp.arrays(
    dtype, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=40),
    elements=st.floats(width=dtype.itemsize * 8, allow_nan=True, allow_infinity=True)))


@settings(max_examples=200, deadline=None)
@given(arrays)
def test_encoding_writes_the_bytes_the_protobuf_api_writes(array):
    ours = to_tensor_proto(array, typed_values=True)
    assert ours.SerializeToString() == api_encoded(array).SerializeToString()


@settings(max_examples=200, deadline=None)
@given(arrays)
def test_decoding_reads_the_values_the_protobuf_api_reads(array):
    proto = tensor_pb2.TensorProto.FromString(api_encoded(array).SerializeToString())
    field = FIELDS[array.dtype][0]
    expected = np.asarray(getattr(proto, field), dtype=array.dtype)
    decoded = from_tensor_proto(proto)
    assert decoded.shape == array.shape
    if expected.size:  # bit for bit, NaN payloads included
        np.testing.assert_array_equal(decoded.reshape(-1).view(np.uint8), expected.view(np.uint8))


@pytest.mark.parametrize("dtype", sorted(FIELDS, key=str))
def test_unpacked_values_and_several_runs_are_read_in_order(dtype):
    """A sender may write the field unpacked, or in several packed runs (a parser merges them
    in order); the byte-run reader must see what the API sees."""
    field, code, number, wire = FIELDS[dtype]
    values = np.arange(700, dtype=dtype) / 7
    head = tensor_pb2.TensorProto(dtype=code, tensor_shape=shape_proto((700,)))
    wire_form = head.SerializeToString()
    wire_form += _varint(number << 3 | 2) + _varint(300 * dtype.itemsize) + values[:300].tobytes()
    for value in values[300:310]:  # unpacked: key + one fixed-width value each
        wire_form += _varint(number << 3 | wire) + value.tobytes()
    wire_form += _varint(number << 3 | 2) + _varint(390 * dtype.itemsize) + values[310:].tobytes()
    proto = tensor_pb2.TensorProto.FromString(wire_form)
    assert len(getattr(proto, field)) == 700
    np.testing.assert_array_equal(from_tensor_proto(proto), values)


def test_fewer_values_than_elements_repeat_the_last_and_more_are_refused():
    proto = to_tensor_proto(np.arange(300, dtype=np.float32), typed_values=True)
    proto.tensor_shape.CopyFrom(shape_proto((2, 200)))
    decoded = from_tensor_proto(proto)
    assert decoded.shape == (2, 200) and (decoded.reshape(-1)[300:] == 299).all()
    proto.tensor_shape.CopyFrom(shape_proto((2, 100)))
    with pytest.raises(TensorDecodeError, match="300 values in float_val"):
        from_tensor_proto(proto)


def test_filling_a_reply_entry_in_place_equals_a_standalone_proto():
    from serving.api.protos import predict_pb2
    heat = np.random.default_rng(1).random((2, 64, 64, 1), dtype=np.float32)
    reply = predict_pb2.PredictResponse()
    to_tensor_proto(heat, typed_values=True, into=reply.outputs["heatmap"])
    assert reply.outputs["heatmap"] == to_tensor_proto(heat, typed_values=True)
    np.testing.assert_array_equal(from_tensor_proto(reply.outputs["heatmap"]), heat)


def test_reply_outputs_read_from_the_wire_equal_the_map():
    """output_tensors reads a PredictResponse's `outputs` as the map API does, a repeated key
    keeping its last entry, as protobuf's parser does."""
    from serving.api.protos import predict_pb2
    from serving.api.tensor_codec import output_tensors

    reply = predict_pb2.PredictResponse()
    reply.model_spec.name = "m"
    to_tensor_proto(np.arange(5, dtype=np.float32), typed_values=True,
                    into=reply.outputs["probability"])
    to_tensor_proto(np.array([b"a", b"bc"], dtype=object), into=reply.outputs["names"])
    to_tensor_proto(np.zeros((2, 3), np.int64), typed_values=True, into=reply.outputs["ids"])
    wire = reply.SerializeToString()
    later = predict_pb2.PredictResponse()
    to_tensor_proto(np.ones(2, dtype=np.float32), typed_values=True,
                    into=later.outputs["probability"])
    parsed = predict_pb2.PredictResponse.FromString(wire + later.SerializeToString())
    ours = output_tensors(parsed)
    assert set(ours) == set(parsed.outputs) == {"probability", "names", "ids"}
    for name, tensor in parsed.outputs.items():
        assert ours[name] == tensor
    np.testing.assert_array_equal(from_tensor_proto(ours["probability"]), [1, 1])
    assert output_tensors(predict_pb2.PredictResponse()) == {}
