"""DicomExampleGen's gzip TFRecord sink (components/dicom_example_gen/gzip_sink.py: ISA-L
deflate, level 1): what it writes is standard gzip TFRecords, read back whole by TensorFlow and
by our own reader, compressed by the sink's own compressor and level."""
from __future__ import annotations

import gzip
import os

import apache_beam as beam
import pytest

from components.dicom.records import read_tfrecords
from components.dicom_example_gen.gzip_sink import GZIP_LEVEL, compressor, write_gzip_tfrecords

pytestmark = pytest.mark.integration


def test_isal_gzip_tfrecords_read_back_whole_with_tensorflow_and_our_reader(tmp_path):
    import tensorflow as tf

    records = [os.urandom(1000) + bytes(5000) for _ in range(20)] + [b""]
    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
            ["--direct_running_mode=in_memory"])) as pipeline:
        _ = (pipeline | beam.Create(records)
             | write_gzip_tfrecords(str(tmp_path / "data_tfrecord")))
    files = sorted(tmp_path.glob("data_tfrecord-*.gz"))
    assert files, list(tmp_path.iterdir())
    read = [record for path in files for record in read_tfrecords(path)]
    assert sorted(read) == sorted(records)
    with_tf = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(
        [str(f) for f in files], compression_type="GZIP")]
    assert sorted(with_tf) == sorted(records)
    raw = files[0].read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == bytes(4)  # gzip magic, mtime 0
    assert gzip.decompress(raw)  # a complete stream, trailer included
    ours = compressor(GZIP_LEVEL)
    header = (ours.compress(b"x") + ours.flush())[:10]
    assert raw[:10] == header and raw[9] == 0xFF  # ISA-L's header (OS 255); zlib writes OS 3
