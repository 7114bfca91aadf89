"""Small SavedModels and a running local server, for the serving tests.

`save_version` writes a real `tf.Module` that follows the signature contract of
components/contract.py exactly (`serving_default`: uint8 `image` [None, S, S, 1] -> float32
`probability`, `logit` [None]; `serving_examples`: string `examples` [None] -> the same;
`serving_explain`: uint8 `image` -> the same plus its Grad-CAM `heatmap` [None, S, S, 1], by
the exporter's own components/trainer/explain.py on the model's convolution), with
weights drawn from the version number so that versions answer differently. It is written the
way the Pusher writes: into a hidden temp folder, then renamed to base_path/<version>, so a
polling server never sees half a model. When the real pipeline pushes models, tests can point
`base_path` at its push destination instead.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from components import contract, features

MODEL_NAME = contract.DEFAULT_MODEL_NAME
IMAGE_SIZE = 32
TEST_LOAD_RETRY_INTERVAL_MICROS = 100_000


class ContractModel(tf.Module):
    """Rescale -> 3x3 conv (4 filters, relu) -> global mean -> dense -> logit."""

    def __init__(self, image_size: int, seed: int, threshold: float | None = None):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.image_size = image_size
        self.threshold = threshold  # exported as contract.THRESHOLD_OUTPUT when given
        self.kernel = tf.Variable(rng.normal(0, 0.5, (3, 3, 1, 4)).astype(np.float32))
        self.dense = tf.Variable(rng.normal(0, 1.0, (4, 1)).astype(np.float32))
        self.bias = tf.Variable(np.float32(rng.normal(0, 0.5)))

        image_spec = tf.TensorSpec([None, image_size, image_size, 1], tf.uint8,
                                   name=contract.IMAGE_INPUT)
        examples_spec = tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)
        self.serve_images = tf.function(self._serve_images, input_signature=[image_spec])
        self.serve_examples = tf.function(self._serve_examples, input_signature=[examples_spec])
        self.serve_explain = tf.function(self._serve_explain, input_signature=[image_spec])

    def features(self, image: tf.Tensor) -> tf.Tensor:
        x = tf.cast(image, tf.float32) / 255.0
        return tf.nn.relu(tf.nn.conv2d(x, self.kernel, strides=1, padding="SAME"))

    def head(self, activations: tf.Tensor) -> tf.Tensor:
        x = tf.reduce_mean(activations, axis=[1, 2])
        return tf.reshape(tf.matmul(x, self.dense), [-1]) + self.bias

    def logits(self, image: tf.Tensor) -> tf.Tensor:
        return self.head(self.features(image))

    def _serve_explain(self, image):
        from components.trainer.explain import grad_cam, upsampling_matrix

        # a 'same' convolution of stride 1: cell u is centred on pixel u
        grid = upsampling_matrix(self.image_size, self.image_size, (0.0, 1.0))
        logit, heatmap = grad_cam(self.features, self.head, image, grid, grid)
        return {contract.PROBABILITY: tf.sigmoid(logit), contract.LOGIT: logit,
                contract.HEATMAP: heatmap}

    def _serve_images(self, image):
        logit = self.logits(image)
        outputs = {contract.PROBABILITY: tf.sigmoid(logit), contract.LOGIT: logit}
        if self.threshold is not None:
            outputs[contract.THRESHOLD_OUTPUT] = tf.fill(tf.shape(logit), self.threshold)
        return outputs

    def _serve_examples(self, examples):
        parsed = tf.io.parse_example(
            examples, {features.IMAGE: tf.io.FixedLenFeature([], tf.string)})
        image = tf.io.decode_raw(parsed[features.IMAGE], tf.uint8)
        image = tf.reshape(image, [-1, self.image_size, self.image_size, 1])
        return self._serve_images(image)


def contract_signatures(model: ContractModel) -> dict:
    """The model's functions under the signature names a pushed model serves."""
    return {contract.SERVING_DEFAULT: model.serve_images,
            contract.SERVING_EXAMPLES: model.serve_examples,
            contract.SERVING_EXPLAIN: model.serve_explain}


def save_version(base_path: str | os.PathLike, version: int, *,
                 image_size: int = IMAGE_SIZE, threshold: float | None = None) -> Path:
    """Write version `version` atomically (temp folder + rename); returns its folder.
    `threshold`: the model's own operating threshold (an output of its signatures)."""
    base_path = Path(base_path)
    base_path.mkdir(parents=True, exist_ok=True)
    model = ContractModel(image_size, seed=version, threshold=threshold)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=base_path))
    tf.saved_model.save(model, str(staging), signatures=contract_signatures(model))
    final = base_path / str(version)
    os.rename(staging, final)
    return final


def reference_predict(version_dir: str | os.PathLike, images: np.ndarray) -> dict[str, np.ndarray]:
    """The in-process SavedModel call the gRPC answers must equal."""
    loaded = tf.saved_model.load(str(version_dir))
    outputs = loaded.signatures[contract.SERVING_DEFAULT](
        **{contract.IMAGE_INPUT: tf.constant(images)})
    return {name: tensor.numpy() for name, tensor in outputs.items()}


def random_images(count: int, image_size: int = IMAGE_SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, image_size, image_size, 1),
                                                dtype=np.uint8)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(config_path: str | os.PathLike, **settings) -> Iterator["ModelServer"]:
    """An in-process local server on a free loopback port, stopped (drained) on exit."""
    from serving.server.grpc_server import ModelServer, ServerSettings

    # TF Serving's load retries, 0.1 s apart instead of 60 s: a broken version ends in seconds.
    settings.setdefault("load_retry_interval_micros", TEST_LOAD_RETRY_INTERVAL_MICROS)
    server = ModelServer(ServerSettings(model_config=str(config_path), host="127.0.0.1",
                                        port=free_port(), **settings))
    server.start()
    try:
        yield server
    finally:
        server.stop(grace_s=2.0)


def copy_version(source_dir: str | os.PathLike, base_path: str | os.PathLike,
                 version: int) -> Path:
    """Publish an existing SavedModel as a new version, atomically (copy, then rename)."""
    base_path = Path(base_path)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=base_path))
    shutil.copytree(source_dir, staging, dirs_exist_ok=True)
    final = base_path / str(version)
    os.rename(staging, final)
    return final


def write_mr_dicom(path: str | os.PathLike, frames: np.ndarray, *, instance_number: int = 1,
                   study_uid: str = "1.2.826.0.1.3680043.8.498.1",
                   series_uid: str = "1.2.826.0.1.3680043.8.498.2") -> Path:
    """A small axial MR DICOM written with pydicom: one frame -> MR Image Storage, several ->
    Enhanced MR (orientation shared, one position per frame). frames: uint16 [F, rows, cols]."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage

    frames = np.asarray(frames, dtype=np.uint16)
    multi = frames.shape[0] > 1
    sop_class = EnhancedMRImageStorage if multi else MRImageStorage
    sop_uid = f"{series_uid}.{instance_number}"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, sop_uid, "MR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.InstanceNumber = instance_number
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    axial = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    if multi:
        ds.NumberOfFrames = frames.shape[0]
        orientation = Dataset()
        orientation.ImageOrientationPatient = axial
        shared = Dataset()
        shared.PlaneOrientationSequence = Sequence([orientation])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        per_frame = []
        for index in range(frames.shape[0]):
            position = Dataset()
            position.ImagePositionPatient = [0.0, 0.0, float(index * 5)]
            group = Dataset()
            group.PlanePositionSequence = Sequence([position])
            per_frame.append(group)
        ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    else:
        ds.ImageOrientationPatient = axial
        ds.ImagePositionPatient = [0.0, 0.0, float(instance_number * 5)]
    ds.PixelData = frames.astype("<u2").tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def brain_like_frames(count: int, rows: int = 48, cols: int = 40, seed: int = 0) -> np.ndarray:
    """uint16 frames with structure (a bright ellipse, noise), not constant: preprocessable."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    frames = []
    for index in range(count):
        ellipse = ((y - rows / 2) / (rows / 3)) ** 2 + ((x - cols / 2) / (cols / 3.5)) ** 2 < 1
        frame = 200 + 1500 * ellipse + rng.integers(0, 300, (rows, cols)) + 40 * index
        frames.append(frame)
    return np.asarray(frames, dtype=np.uint16)
