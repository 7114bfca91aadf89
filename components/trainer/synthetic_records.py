"""Synthetic slice examples in the exact TFRecord contract, for the Trainer's tests and bench.

Not patient data: the images are generated, the IDs are salted hashes of made-up UIDs. Files
are gzip-compressed TFRecords, as TFX's ExampleGen writes them.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from components import features


def slice_example(image: np.ndarray, label: int, *, study: str = "study-0",
                  series: str = "series-0", scanner: str = "SYNTH", slice_index: int = 0,
                  orientation: str = "axial") -> tf.train.Example:
    """One tf.Example with every feature of components/features.py; image uint8 [S, S, 1]."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 1:
        raise ValueError(f"image must be uint8 [S, S, 1], got {image.dtype} {image.shape}")

    def as_bytes(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def as_int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    feature_map = {
        features.IMAGE: as_bytes(image.tobytes()),
        features.LABEL: as_int(label),
        features.STUDY_ID: as_bytes(features.hash_uid(study).encode()),
        features.SERIES_ID: as_bytes(features.hash_uid(series).encode()),
        features.SCANNER: as_bytes(scanner.encode()),
        features.SLICE_INDEX: as_int(slice_index),
        features.ORIENTATION: as_bytes(orientation.encode()),
        features.ROWS: as_int(image.shape[0]),
        features.COLS: as_int(image.shape[1]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature_map))


def write_gzip_tfrecord(path: str | os.PathLike, examples: Sequence[tf.train.Example]) -> str:
    """Writes examples to one gzip TFRecord file and returns its path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for example in examples:
            w.write(example.SerializeToString())
    return path


def blob_images(count: int, image_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A learnable toy task: label 1 slices carry a bright blob, label 0 slices do not.

    Returns (images uint8 [N, S, S, 1], labels int64 [N]) with alternating labels, on a noisy
    background so the task is not a single-pixel giveaway.
    """
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(count, image_size, image_size, 1), dtype=np.uint8)
    labels = np.arange(count, dtype=np.int64) % 2
    radius = max(2, image_size // 8)
    yy, xx = np.mgrid[:image_size, :image_size]
    for index in np.flatnonzero(labels):
        cy, cx = rng.integers(radius, image_size - radius, size=2)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
        images[index, blob, 0] = 220
    return images, labels


def write_blob_dataset(directory: str | os.PathLike, count: int, image_size: int, seed: int,
                       *, studies: int = 4) -> str:
    """`blob_images` as one gzip TFRecord file in `directory`; returns the file path."""
    images, labels = blob_images(count, image_size, seed)
    examples = [
        slice_example(image, int(label), study=f"study-{index % studies}",
                      series=f"series-{index % studies}", slice_index=index)
        for index, (image, label) in enumerate(zip(images, labels))
    ]
    return write_gzip_tfrecord(os.path.join(os.fspath(directory), "data.tfrecord.gz"), examples)
