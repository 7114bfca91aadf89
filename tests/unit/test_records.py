"""The TF-free record reader: framing, CRCs and Example decoding (TensorFlow's own bytes are
compared in tests/integration/test_dicom_example_gen.py and test_rollout.py)."""
from __future__ import annotations

import gzip
import struct

import pytest

from components.dicom import records


def _frame(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", records._masked_crc(header)) + data
            + struct.pack("<I", records._masked_crc(data)))


def test_records_round_trip_gzip_or_plain_and_examples_decode(tmp_path):
    examples = [records.encode_example({"image": b"\x00\xff", "label": 1, "study_id": "ab",
                                        "slice_index": -3}) for _ in range(3)]
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "a.gz").write_bytes(gzip.compress(b"".join(map(_frame, examples))))
    (tmp_path / "split" / "b").write_bytes(_frame(examples[0]))
    (tmp_path / "split" / ".hidden").write_bytes(b"not read")
    files = records.tfrecord_files(tmp_path / "split")
    assert [path.name for path in files] == ["a.gz", "b"]
    assert [list(records.read_tfrecords(path)) for path in files] == [examples, examples[:1]]
    assert records.decode_example(examples[0]) == {
        "image": [b"\x00\xff"], "label": [1], "study_id": [b"ab"], "slice_index": [-3]}


def test_bad_input_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TFRecord files"):
        (tmp_path / "empty").mkdir()
        records.tfrecord_files(tmp_path / "empty")
    corrupt = bytearray(_frame(b"payload"))
    corrupt[-5] ^= 1
    (tmp_path / "corrupt").write_bytes(bytes(corrupt))
    with pytest.raises(records.RecordError, match="corrupt: record 0: data CRC mismatch"):
        list(records.read_tfrecords(tmp_path / "corrupt"))
    with pytest.raises(records.RecordError, match="not a serialized tf.Example"):
        records.decode_example(b"\x0a\x05abc")
