"""One loaded model version: a SavedModel plus its SignatureDefs, callable from many threads.

Validation follows TF Serving's `predict_util.cc` (same checks, same status codes, messages
close to the C++ ones) so that a client written against this server behaves identically
against `tensorflow/serving`:
- unknown signature -> FAILED_PRECONDITION; inputs missing or extra -> INVALID_ARGUMENT;
- undecodable tensor, wrong dtype (no casting: a float tensor for a uint8 input is refused, as
  TF Serving refuses it), wrong rank or size -> INVALID_ARGUMENT;
- unknown output_filter alias -> INVALID_ARGUMENT.
Signature functions are called without any lock: TensorFlow functions are thread-safe, and
TensorFlow releases the GIL while it computes. Batch limits and the merging of concurrent
requests (TF Serving's --enable_batching), and bounded model calls, are
serving/server/batching.py's.
A model that fails at run time answers with TensorFlow's whole message (status code kept), as
TF Serving does, less the framing Python's eager runtime adds around it (`serving_error_from`).
"""
from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from components.contract import SERVING_DEFAULT
from serving.api.errors import ServingError, failed_precondition, invalid_argument, \
    status_code_from_value
from serving.api.protos import (get_model_metadata_pb2, meta_graph_pb2, saved_model_pb2,
                                tensor_pb2, types_pb2)
from serving.api.tensor_codec import TensorDecodeError, dtype_name, from_tensor_proto, shape_of
from serving.server.metrics import runtime_timed
from serving.server.batching import BatchLimits, BatchScheduler

LOG = logging.getLogger(__name__)
# What TensorFlow's Python function call wraps around the runtime's status message; TF Serving
# calls the runtime from C++ and answers with the message alone.
_EAGER_PREFIX = re.compile(r"\AGraph execution error:\s*(?:Detected at node \S+ defined at "
                           r"\(most recent call last\):\n<stack traces unavailable>\n)?")
_EAGER_SUFFIX = re.compile(r" \[Op:[^\]\n]*\]\s*\Z")
SERVE_TAG = "serve"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def is_complete_version_dir(path: Path) -> bool:
    """A version folder is loadable once its saved_model.pb exists (Pusher writes it last)."""
    return any((path / name).is_file() for name in SAVED_MODEL_FILES)


def read_signature_defs(version_dir: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of the `serve` MetaGraph: what TF Serving validates against and
    returns from GetModelMetadata."""
    saved_model = saved_model_pb2.SavedModel()
    pb_path = version_dir / "saved_model.pb"
    if pb_path.is_file():
        saved_model.ParseFromString(pb_path.read_bytes())
    else:
        from google.protobuf import text_format
        text_format.Parse((version_dir / "saved_model.pbtxt").read_text(), saved_model)
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"version {version_dir.name}: SavedModel has no '{SERVE_TAG}' MetaGraph")


class Servable:
    """A loaded, warmed SavedModel version. Immutable after construction."""

    def __init__(self, model_name: str, version: int, path: str | os.PathLike,
                 limits: BatchLimits = BatchLimits(), scheduler: BatchScheduler | None = None):
        self.model_name = model_name
        self.version = version
        self.path = Path(path)
        self.limits = limits
        self.scheduler = scheduler  # merges concurrent calls (--enable_batching); None: never
        self.signature_defs = read_signature_defs(self.path)
        self._loaded = tf.saved_model.load(str(self.path), tags=[SERVE_TAG])
        self._functions = {name: self._loaded.signatures[name]
                           for name in self.signature_defs if name in self._loaded.signatures}

    # ---------------------------------------------------------------- metadata
    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in self.signature_defs.items():
            signature_map.signature_def[name].CopyFrom(signature)
        return signature_map

    def signature(self, name: str) -> tuple[str, meta_graph_pb2.SignatureDef]:
        name = name or SERVING_DEFAULT
        if name not in self.signature_defs or name not in self._functions:
            raise failed_precondition(f'Serving signature key "{name}" not found.')
        return name, self.signature_defs[name]

    # ---------------------------------------------------------------- predict
    def predict(self, signature_name: str, inputs: dict[str, tensor_pb2.TensorProto],
                output_filter: list[str] | tuple[str, ...] = (), *,
                max_decoded_bytes: int = 1 << 30) -> tuple[str, dict[str, np.ndarray]]:
        """Validate like TF Serving, run the signature, return (signature name, outputs)."""
        name, signature = self.signature(signature_name)
        _check_input_names(signature, inputs)
        arrays = {alias: _decode_input(alias, proto, signature.inputs[alias], max_decoded_bytes)
                  for alias, proto in inputs.items()}
        aliases = _output_aliases(signature, output_filter)
        outputs = self.run(name, arrays)
        return name, {alias: outputs[alias] for alias in aliases}

    @runtime_timed
    def run(self, signature_name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call a signature on already-validated arrays: merged with concurrent calls of the
        same signature and input shapes when batching is on and the signature is batch-major,
        in slices of at most `limits.run_chunk` rows, so memory does not grow with the request;
        TF errors keep their status code and their whole message."""
        return self._run(signature_name, arrays, self.scheduler)

    def _run(self, signature_name: str, arrays: dict[str, np.ndarray],
             scheduler: BatchScheduler | None) -> dict[str, np.ndarray]:
        self.limits.check(arrays)  # TF Serving's batching queue, behind predict_util's checks
        rows = _batch_rows(self.signature_defs[signature_name], arrays)
        if rows is None:
            return _call(self._functions[signature_name], arrays)
        if scheduler is None or rows == 0:
            return self._run_rows(signature_name, arrays)
        key = (self, signature_name, tuple((alias, array.dtype.str, array.shape[1:])
                                           for alias, array in sorted(arrays.items())))
        return scheduler.run(key, arrays, rows, functools.partial(self._run_rows, signature_name))

    def _run_rows(self, signature_name: str, arrays: dict[str, np.ndarray]
                  ) -> dict[str, np.ndarray]:
        """A batch-major call in slices of at most `limits.run_chunk` rows."""
        function = self._functions[signature_name]
        rows = len(next(iter(arrays.values())))
        parts = [_call(function, {alias: array[rows_slice] for alias, array in arrays.items()})
                 for rows_slice in self.limits.slices(rows)]
        if len(parts) == 1:
            return parts[0]
        return {alias: np.concatenate([part[alias] for part in parts]) for alias in parts[0]}

    # ---------------------------------------------------------------- warm-up
    def warm_up(self) -> int:
        """Run each numeric signature once (graph optimisation happens on the first call), so
        the first real request is not the slow one; not through the batch scheduler (these
        are not requests: no batch timeout to wait, no batching metrics). Returns the number
        of warm-up calls."""
        calls = 0
        for name, signature in self.signature_defs.items():
            arrays = _zeros_for(signature)
            if arrays is None or name not in self._functions:
                continue
            started = time.perf_counter()
            self._run(name, arrays, scheduler=None)
            calls += 1
            LOG.info("warmed %s version %d signature %s in %.0f ms", self.model_name,
                     self.version, name, 1000 * (time.perf_counter() - started))
        return calls


def servable_loader(limits: BatchLimits, scheduler: BatchScheduler | None = None
                    ) -> Callable[[str, int, Path], Servable]:
    """ModelManager's loader for a server with these batch limits (and, with batching on, its
    scheduler): load, then warm up."""
    def load_and_warm(model_name: str, version: int, path: Path) -> Servable:
        servable = Servable(model_name, version, path, limits, scheduler)
        servable.warm_up()
        return servable
    return load_and_warm


def _call(function: Callable, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        outputs = function(**{alias: tf.constant(array) for alias, array in arrays.items()})
    except (tf.errors.OpError, TypeError, ValueError) as error:  # TypeError, ValueError:
        raise serving_error_from(error) from None                 # the function's input checks
    return {alias: tensor.numpy() for alias, tensor in outputs.items()}


def serving_error_from(error: Exception) -> ServingError:
    """The reply for a failed signature call: TensorFlow's status code (INVALID_ARGUMENT for
    the function's own input checks) and the whole message, every line of it."""
    if isinstance(error, tf.errors.OpError):
        message = _EAGER_SUFFIX.sub("", _EAGER_PREFIX.sub("", error.message)) or error.message
        return ServingError(status_code_from_value(error.error_code), message)
    return invalid_argument(str(error))


def _batch_rows(signature: meta_graph_pb2.SignatureDef,
                arrays: dict[str, np.ndarray]) -> int | None:
    """The row count when a call may be sliced along axis 0 and its outputs concatenated:
    every input has the same 0th dimension and every output is declared [batch, ...]."""
    sizes = {len(array) if np.ndim(array) else None for array in arrays.values()}
    if len(sizes) != 1 or None in sizes:
        return None
    for info in signature.outputs.values():
        shape = shape_of(info.tensor_shape)
        if not shape or shape[0] >= 0:
            return None
    return sizes.pop()


def _check_input_names(signature: meta_graph_pb2.SignatureDef,
                       inputs: dict[str, tensor_pb2.TensorProto]) -> None:
    sent, expected = set(inputs), set(signature.inputs)
    if sent == expected:
        return
    extra, missing = sorted(sent - expected), sorted(expected - sent)
    raise invalid_argument(
        f"input size does not match signature: {len(sent)}!={len(expected)} "
        f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
        f"Sent extra: {{{','.join(extra)}}}. Missing but required: {{{','.join(missing)}}}.")


def _decode_input(alias: str, proto: tensor_pb2.TensorProto,
                  info: meta_graph_pb2.TensorInfo, max_decoded_bytes: int) -> np.ndarray:
    if proto.dtype != info.dtype:
        raise invalid_argument(f"Expects arg[{alias}] to be {dtype_name(info.dtype)} but "
                               f"{dtype_name(proto.dtype)} is provided")
    try:
        array = from_tensor_proto(proto, name=alias, max_decoded_bytes=max_decoded_bytes)
    except TensorDecodeError as error:
        raise invalid_argument(f"tensor parsing error: {error}") from None
    expected = shape_of(info.tensor_shape)
    if expected is not None and not _shape_matches(array.shape, expected):
        raise invalid_argument(
            f"input {alias}: shape {list(array.shape)} does not match the signature's "
            f"{[size if size >= 0 else None for size in expected]}")
    return array


def _shape_matches(actual: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    return len(actual) == len(expected) and all(
        want < 0 or want == got for got, want in zip(actual, expected))


def _output_aliases(signature: meta_graph_pb2.SignatureDef, output_filter) -> list[str]:
    if not output_filter:
        return list(signature.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in signature.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{','.join(sorted(signature.outputs))}}}.")
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


def _zeros_for(signature: meta_graph_pb2.SignatureDef) -> dict[str, np.ndarray] | None:
    """A batch-of-one zero input for a signature with numeric, fully-known inner dims."""
    arrays = {}
    for alias, info in signature.inputs.items():
        shape = shape_of(info.tensor_shape)
        if info.dtype == types_pb2.DT_STRING or shape is None or any(s < 0 for s in shape[1:]):
            return None
        dtype = tf.dtypes.as_dtype(info.dtype).as_numpy_dtype
        arrays[alias] = np.zeros((1, *shape[1:]) if shape else (), dtype=dtype)
    return arrays
