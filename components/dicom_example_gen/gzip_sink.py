"""Gzip TFRecord files written at zlib level 1 instead of Beam's fixed level 6.

Once preprocessing cost little (issue 13), gzip became the largest per-slice cost of ingest:
level 6 spends several times pydicom's decode on each 256 KiB slice and gets 186 KiB out of
it (MR noise does not compress); level 1 takes about 40 % of that time for under 1 % more bytes
(bench/ingest.py). The files stay standard gzip TFRecords (TFX's FORMAT_TFRECORDS_GZIP): every
reader (TFXIO, tf.data, components.dicom.records) reads them unchanged. Beam's
WriteToTFRecord has no level option, so this is its sink with one method replaced.
"""
from __future__ import annotations

import zlib

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordSink

GZIP_LEVEL = 1
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer (mtime 0: same bytes every run)


class _GzipWriter:
    """Write-only gzip stream over a Beam file handle; closing it closes the handle."""

    def __init__(self, raw, level: int):
        self._raw = raw
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)

    def write(self, data: bytes) -> None:
        self._raw.write(self._compressor.compress(data))

    def close(self) -> None:
        self._raw.write(self._compressor.flush())
        self._raw.close()


class _GzipTFRecordSink(_TFRecordSink):
    def __init__(self, file_path_prefix: str, file_name_suffix: str, level: int):
        super().__init__(file_path_prefix, coders.BytesCoder(), file_name_suffix, 0, None,
                         CompressionTypes.UNCOMPRESSED)
        self._level = level

    def open(self, temp_path: str) -> _GzipWriter:
        return _GzipWriter(FileSystems.create(temp_path, self.mime_type,
                                              CompressionTypes.UNCOMPRESSED), self._level)


def write_gzip_tfrecords(file_path_prefix: str, level: int = GZIP_LEVEL) -> beam.PTransform:
    """`beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz")` at gzip `level`."""
    return beam.io.Write(_GzipTFRecordSink(file_path_prefix, ".gz", level))
