"""Gzip TFRecord files written by ISA-L's deflate (python-isal) at its level 1, instead of
Beam's zlib at its fixed level 6.

Once preprocessing cost little (issue 13), gzip became the largest per-slice cost of ingest:
zlib level 6 spends several times pydicom's decode on each 256 KiB slice and gets 182 KiB out
of it (MR noise does not compress); zlib level 1 about half of that, for 183 KiB; ISA-L level 1
about a seventh of zlib level 1 (~0.8 ms against ~5.5 ms on our VMs), for 188 KiB
(bench/ingest.py prints all three). The files stay standard gzip TFRecords (TFX's
FORMAT_TFRECORDS_GZIP): every reader (TFXIO, tf.data, components.dicom.records) reads them
unchanged. Beam's WriteToTFRecord has no compressor option, so this is its sink with one
method replaced.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordSink
from isal import isal_zlib

GZIP_LEVEL = 1  # ISA-L levels are 0-3; 1 compresses as zlib's level 1 does, within 3 %
_GZIP_WBITS = 16 + isal_zlib.MAX_WBITS  # gzip header and trailer (mtime 0: same bytes every run)


def compressor(level: int = GZIP_LEVEL):
    """A gzip stream compressor, as zlib.compressobj returns: what the sink writes with."""
    return isal_zlib.compressobj(level, isal_zlib.DEFLATED, _GZIP_WBITS)


class GzipWriter:
    """Write-only gzip stream over a binary file handle; closing it closes the handle."""

    def __init__(self, raw, level: int = GZIP_LEVEL):
        self._raw = raw
        self._compressor = compressor(level)

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

    def open(self, temp_path: str) -> GzipWriter:
        return GzipWriter(FileSystems.create(temp_path, self.mime_type,
                                              CompressionTypes.UNCOMPRESSED), self._level)


def write_gzip_tfrecords(file_path_prefix: str, level: int = GZIP_LEVEL) -> beam.PTransform:
    """`beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz")` at gzip `level`."""
    return beam.io.Write(_GzipTFRecordSink(file_path_prefix, ".gz", level))
