"""Batch limits: TF Serving's `--enable_batching` / `--batching_parameters_file`, and bounded runs.

TF Serving with batching on wraps each model in a BatchingSession whose queue refuses a request
larger than `max_batch_size` (SharedBatchScheduler's `input_batch_size_limit`) before it runs:
INVALID_ARGUMENT "Task size 64 is larger than maximum input batch size 32". That check is the
same with `enable_large_batch_splitting` (splitting only cuts a request that fits the input
limit into execution batches of `max_execution_batch_size`) and with `allowed_batch_sizes`
(padding happens after the check; the last allowed size must equal max_batch_size, or the
model fails to load). Without batching there is no batch limit at all.

What this server does not copy: concurrent requests are not merged into one model call (on the
CPUs measured here merging gave no throughput gain; `batch_timeout_micros`,
`max_enqueued_batches` and `num_batch_threads` are read and validated but change nothing).

What it adds: whatever the request size, the model runs on slices of at most `RUN_CHUNK` rows
(or the configured execution batch, if smaller) and the outputs are concatenated, so one big
request cannot raise the server's peak memory in proportion to its size (one 64-image 512^2
request once took the server from 0.94 to 3.84 GiB, kept by the allocator afterwards).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from serving.api.errors import invalid_argument
from serving.api.model_config import ModelConfigError
from serving.api.protos import BatchingParameters

# SharedBatchScheduler::QueueOptions::input_batch_size_limit when max_batch_size is unset.
DEFAULT_MAX_BATCH_SIZE = 1000
# Rows per model call; the thin client's default batch, 8 MiB of 512^2 uint8 images.
RUN_CHUNK = 32


class BatchingConfigError(ModelConfigError):
    """--batching_parameters_file cannot be used: the server refuses to start, as TF Serving."""


@dataclass(frozen=True)
class BatchLimits:
    """How requests are sized: `max_input_size` None means batching is off (no limit)."""
    max_input_size: int | None = None
    run_chunk: int = RUN_CHUNK

    def __post_init__(self) -> None:
        if self.run_chunk < 1:
            raise ValueError(f"run_chunk must be positive, got {self.run_chunk}")

    def check(self, arrays: dict[str, np.ndarray]) -> None:
        """With batching on, refuse what TF Serving's BatchingSession refuses, same texts
        (batching_util.h ComputeTensorBatchSize, shared_batch_scheduler.h)."""
        if self.max_input_size is None:
            return
        size = batch_size_of(arrays)
        if size > self.max_input_size:
            raise invalid_argument(f"Task size {size} is larger than maximum input batch size "
                                   f"{self.max_input_size}")

    def slices(self, size: int) -> list[slice]:
        """Row ranges of at most `run_chunk` rows; one (possibly empty) range when it fits."""
        if size <= self.run_chunk:
            return [slice(0, size)]
        return [slice(start, min(start + self.run_chunk, size))
                for start in range(0, size, self.run_chunk)]


def batch_size_of(arrays: dict[str, np.ndarray]) -> int:
    """The common 0th dimension of the inputs; TF Serving's errors when there is none."""
    if not arrays:
        raise invalid_argument("Batching Run() must have at least one input tensor")
    sizes = set()
    for array in arrays.values():
        if np.ndim(array) == 0:
            raise invalid_argument("Batching Run() input tensors must have at least one "
                                   "dimension")
        sizes.add(len(array))
    if len(sizes) > 1:
        raise invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop()


def read_batching_parameters(path: str | Path) -> BatchingParameters:
    """Parse a BatchingParameters text proto; a bad file stops the server at start."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise BatchingConfigError(f"{path}: cannot read batching parameters: "
                                  f"{error.strerror}") from None
    try:
        return text_format.Parse(text, BatchingParameters())
    except text_format.ParseError as error:
        raise BatchingConfigError(f"{path}: not a BatchingParameters text proto: "
                                  f"{error}") from None


def limits_from_parameters(parameters: BatchingParameters) -> BatchLimits:
    """BatchLimits for batching on with these parameters (GetQueueOptions in TF Serving's
    bundle_factory_util.h), after its load-time checks (CreateBatchScheduler)."""
    max_size = (parameters.max_batch_size.value if parameters.HasField("max_batch_size")
                else DEFAULT_MAX_BATCH_SIZE)
    if max_size < 1:
        raise BatchingConfigError(f"max_batch_size must be positive, got {max_size}")
    allowed = list(parameters.allowed_batch_sizes)
    if allowed and allowed[-1] != max_size:
        raise BatchingConfigError(
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
            f"{allowed[-1]}; expected {max_size}")
    execution = max_size
    if parameters.enable_large_batch_splitting.value and parameters.HasField(
            "max_execution_batch_size"):
        execution = max(1, parameters.max_execution_batch_size.value)
    return BatchLimits(max_input_size=max_size, run_chunk=min(execution, RUN_CHUNK))


def batch_limits(enable_batching: bool, batching_parameters_file: str | None) -> BatchLimits:
    """The server's limits from its two TF Serving flags (server.cc's rules: a parameters file
    without --enable_batching is an error; batching without a file uses the defaults)."""
    if not enable_batching:
        if batching_parameters_file:
            raise BatchingConfigError(
                "server_options.batching_parameters_file is set without setting "
                "server_options.enable_batching to true.")
        return BatchLimits()
    if not batching_parameters_file:
        return limits_from_parameters(BatchingParameters())
    return limits_from_parameters(read_batching_parameters(batching_parameters_file))
