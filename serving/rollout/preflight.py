"""Pre-flight of a candidate version, after it loaded and before any request is routed to it.

Two questions, asked by version number (requests by version are not traffic: routers only send
the `stable` and `canary` labels, and the candidate has no label yet):
1. Does it speak stable's API? Every signature stable serves exists in the candidate with the
   same input names, dtypes and compatible shapes, and at least stable's outputs, same dtypes.
   (A candidate with its input renamed would fail every routed call.)
2. Does it answer sanely? Predict on a probe batch of preprocessed slices (the held-out set the
   shadow analysis reads, serving/rollout/data.py): every probability finite and in [0, 1].
   (A NaN model, or a model whose output is not a probability, is refused here.)

Each problem is one line naming the signature/tensor or the output and why.
"""
from __future__ import annotations

import os

import grpc
import numpy as np

from components.contract import PROBABILITY
from serving.api.errors import ServingError
from serving.api.tensor_codec import dtype_name, shape_of
from serving.client.model_client import ModelClient
from serving.rollout.data import EvalDataError, batched, open_eval_data

PROBE_SLICES = 16


def stable_image_size(client: ModelClient) -> int:
    """The input size the `stable` label's version declares (the served version when no
    label exists yet: a first rollout)."""
    try:
        return client.metadata(label="stable").image_size
    except ServingError as error:
        if error.code != grpc.StatusCode.INVALID_ARGUMENT:  # unknown label
            raise
        return client.metadata().image_size


def probe_batch(data: str | os.PathLike, image_size: int, *,
                labels: str | os.PathLike | None = None,
                slices: int = PROBE_SLICES) -> np.ndarray:
    """The first `slices` preprocessed slices of the held-out set, uint8 [N, S, S, 1]."""
    reader, summary = open_eval_data(data, image_size, labels=labels)
    batch = next(batched(reader, slices, summary, max_slices=slices), None)
    if batch is None:
        raise EvalDataError(f"{data}: no usable slice for the pre-flight probe")
    return batch.images


def signature_problems(stable_map, candidate_map, stable: int, candidate: int) -> list[str]:
    """How the candidate's SignatureDefMap breaks callers of stable's (empty: compatible)."""
    problems = []
    for name, wanted in sorted(stable_map.signature_def.items()):
        if name not in candidate_map.signature_def:
            problems.append(f"signature {name!r} of stable version {stable} is missing in "
                            f"version {candidate} (it has "
                            f"{sorted(candidate_map.signature_def)})")
            continue
        got = candidate_map.signature_def[name]
        inputs_wanted, inputs_got = sorted(wanted.inputs), sorted(got.inputs)
        if inputs_wanted != inputs_got:
            problems.append(f"signature {name!r}: inputs {inputs_got} in version {candidate}, "
                            f"stable version {stable} takes {inputs_wanted}")
        for kind, wanted_tensors, got_tensors in (("input", wanted.inputs, got.inputs),
                                                  ("output", wanted.outputs, got.outputs)):
            for key, spec in sorted(wanted_tensors.items()):
                if key not in got_tensors:
                    if kind == "output":
                        problems.append(f"signature {name!r}: output {key!r} of stable version "
                                        f"{stable} is missing in version {candidate}")
                    continue
                problems.extend(_tensor_problems(f"signature {name!r} {kind} {key!r}", spec,
                                                 got_tensors[key], stable, candidate))
    return problems


def _tensor_problems(where: str, wanted, got, stable: int, candidate: int) -> list[str]:
    problems = []
    if wanted.dtype != got.dtype:
        problems.append(f"{where}: {dtype_name(got.dtype)} in version {candidate}, "
                        f"{dtype_name(wanted.dtype)} in stable version {stable}")
    shape_wanted, shape_got = shape_of(wanted.tensor_shape), shape_of(got.tensor_shape)
    if not _shapes_compatible(shape_wanted, shape_got):
        problems.append(f"{where}: shape {_shape(shape_got)} in version {candidate}, "
                        f"{_shape(shape_wanted)} in stable version {stable}")
    return problems


def _shapes_compatible(a: tuple[int, ...] | None, b: tuple[int, ...] | None) -> bool:
    if a is None or b is None:
        return True  # unknown rank accepts (and gives) anything
    return len(a) == len(b) and all(x == y or x == -1 or y == -1 for x, y in zip(a, b))


def _shape(shape: tuple[int, ...] | None) -> str:
    return "unknown" if shape is None else "[" + ", ".join(
        "None" if d == -1 else str(d) for d in shape) + "]"


def output_problems(client: ModelClient, candidate: int, probe: np.ndarray) -> list[str]:
    """Predict the probe on the candidate (by version): finite, in [0, 1], one per slice."""
    try:
        result = client.predict_tensors(probe, version=candidate)
    except ServingError as error:
        return [f"Predict on version {candidate} failed: {error}"]
    p = result.probabilities
    if p.shape != (len(probe),):
        return [f"output {PROBABILITY!r}: {p.size} values for {len(probe)} probe slices"]
    problems = []
    if not np.isfinite(p).all():
        problems.append(f"output {PROBABILITY!r}: {int((~np.isfinite(p)).sum())} of {len(p)} "
                        "probe slices are not finite (NaN or inf)")
    finite = p[np.isfinite(p)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        problems.append(f"output {PROBABILITY!r}: values from {finite.min():.4g} to "
                        f"{finite.max():.4g}, outside [0, 1]")
    return problems


def preflight_problems(client: ModelClient, stable: int, candidate: int,
                       probe: np.ndarray | None) -> list[str]:
    """Every reason not to route traffic to `candidate` (empty: it may get traffic)."""
    try:
        problems = signature_problems(client.signature_defs(version=stable),
                                      client.signature_defs(version=candidate), stable,
                                      candidate)
    except ServingError as error:
        return [f"GetModelMetadata: {error}"]
    if problems or probe is None:
        return problems
    return output_problems(client, candidate, probe)
