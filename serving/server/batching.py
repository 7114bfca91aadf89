"""Server-side batching: TF Serving's `--enable_batching` / `--batching_parameters_file`.

Limits. TF Serving with batching on wraps each model in a BatchingSession whose queue refuses a
request larger than `max_batch_size` (SharedBatchScheduler's `input_batch_size_limit`) before it
runs: INVALID_ARGUMENT "Task size 64 is larger than maximum input batch size 32". That check is
the same with `enable_large_batch_splitting` and with `allowed_batch_sizes` (padding happens
after the check; the last allowed size must equal max_batch_size, or the model fails to load).
Without batching there is no batch limit at all.

Merging (`BatchScheduler`). Concurrent requests to the same model version and signature are
merged into one model call, by SharedBatchScheduler's rules: a batch takes requests until the
next one would not fit in `max_batch_size` rows (`max_execution_batch_size` with splitting on),
and may run once it is full or `batch_timeout_micros` after it opened (0: at once, so requests
gather only while the model is busy: TF Serving's advice for CPUs); at most `num_batch_threads`
batches run at a time, server-wide (default: one per core); a request that would open a batch
beyond `max_enqueued_batches` is refused with UNAVAILABLE "The batch scheduling queue to which
this task was submitted is full". A merged batch is padded to the next `allowed_batch_sizes`
entry with copies of its last request's first row, and each request gets its own rows back.
The series `:tensorflow:serving:batching_session:{queuing_latency, input_batch_size,
processed_batch_size, padding_size}` are TF Serving's (batching_session.cc, batching_util.h).

What differs, on purpose, with the same results:
- No batch threads: a batch is run by the request thread of one of its own requests, holding
  one of the `num_batch_threads` slots; the others wait for it. TF Serving hands every request
  to a batch thread and back: two thread hand-offs, which cost ~1 ms each on an idle 2-core
  machine (bench/grpc_transport.py --handler-ms) and are what a lone request would pay.
- Requests whose inputs differ in a dimension past the 0th, or in dtype, are put in different
  batches (TF Serving merges them and fails the whole batch with FAILED_PRECONDITION unless
  `pad_variable_length_inputs`); `pad_variable_length_inputs` is therefore never needed.
- A request over `max_execution_batch_size` (splitting on) is not cut across batches: it runs
  alone, in model calls of at most that many rows, and counts as that many batches in the
  queue limit.

Bounded runs (batching on or off): whatever the request size, the model runs on slices of at
most `RUN_CHUNK` rows (or the execution batch, if smaller) and the outputs are concatenated, so
one big request cannot raise the server's peak memory in proportion to its size (one 64-image
512^2 request once took the server from 0.94 to 3.84 GiB, kept by the allocator afterwards).
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from google.protobuf import text_format

from serving.api.errors import ServingError, failed_precondition, invalid_argument
from serving.api.model_config import ModelConfigError
from serving.api.protos import BatchingParameters

# SharedBatchScheduler::QueueOptions defaults (input_batch_size_limit, max_enqueued_batches) and
# bundle_factory_util.cc's thread pool name when the parameters file names none.
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_MAX_ENQUEUED_BATCHES = 10
DEFAULT_THREAD_POOL_NAME = "batch_threads"
# main.cc names the pool so when --enable_batching comes without a parameters file.
FLAG_ONLY_THREAD_POOL_NAME = "model_server_batch_threads"
# Rows per model call; the thin client's default batch, 8 MiB of 512^2 uint8 images.
RUN_CHUNK = 32


class BatchingConfigError(ModelConfigError):
    """--batching_parameters_file cannot be used: the server refuses to start, as TF Serving."""


@dataclass(frozen=True)
class Schedule:
    """How concurrent requests are merged (SharedBatchScheduler's queue and pool options)."""
    batch_size: int  # rows a merged batch may hold: the execution batch size
    timeout_s: float = 0.0
    max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES
    num_batch_threads: int = 1
    allowed_batch_sizes: tuple[int, ...] = ()
    thread_pool_name: str = DEFAULT_THREAD_POOL_NAME

    def padded_size(self, rows: int) -> int:
        """RoundToLowestAllowedBatchSize: the first allowed size >= rows (rows when none)."""
        return next((size for size in self.allowed_batch_sizes if size >= rows), rows)


@dataclass(frozen=True)
class BatchLimits:
    """How requests are sized: `max_input_size` None means batching is off (no limit);
    `schedule` how concurrent requests are merged (None: each runs alone)."""
    max_input_size: int | None = None
    run_chunk: int = RUN_CHUNK
    schedule: Schedule | None = None

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
    threads = (parameters.num_batch_threads.value if parameters.HasField("num_batch_threads")
               else len(os.sched_getaffinity(0)))  # port::MaxParallelism()
    if threads < 1:
        raise BatchingConfigError(f"num_batch_threads must be positive, got {threads}")
    enqueued = (parameters.max_enqueued_batches.value
                if parameters.HasField("max_enqueued_batches") else DEFAULT_MAX_ENQUEUED_BATCHES)
    if enqueued < 1:
        raise BatchingConfigError(f"max_enqueued_batches must be positive, got {enqueued}")
    schedule = Schedule(
        batch_size=execution, timeout_s=max(0, parameters.batch_timeout_micros.value) / 1e6,
        max_enqueued_batches=enqueued, num_batch_threads=threads,
        allowed_batch_sizes=tuple(allowed),
        thread_pool_name=(parameters.thread_pool_name.value
                          if parameters.HasField("thread_pool_name")
                          else DEFAULT_THREAD_POOL_NAME))
    return BatchLimits(max_input_size=max_size, run_chunk=min(execution, RUN_CHUNK),
                       schedule=schedule)


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
        parameters = BatchingParameters()
        parameters.thread_pool_name.value = FLAG_ONLY_THREAD_POOL_NAME
        return limits_from_parameters(parameters)
    return limits_from_parameters(read_batching_parameters(batching_parameters_file))


# ---------------------------------------------------------------------------- merging
QueueKey = Hashable
RunBatch = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(eq=False)
class _Batch:
    key: QueueKey
    run: RunBatch
    opened: float
    tasks: list["_Task"] = field(default_factory=list)
    rows: int = 0
    closed: bool = False  # full, or taken to run: no more requests join it
    taken: bool = False


@dataclass(eq=False)
class _Task:
    arrays: dict[str, np.ndarray]
    rows: int
    enqueued: float
    batch: _Batch | None = None
    outputs: dict[str, np.ndarray] | None = None
    error: BaseException | None = None
    done: bool = False


class BatchScheduler:
    """One server's merging of concurrent requests (see the module docstring): `run` blocks
    until the caller's rows are computed, possibly by another request's thread, possibly
    computing other requests' rows itself."""

    def __init__(self, schedule: Schedule, metrics=None):
        self.schedule = schedule
        self._metrics = metrics.batching(schedule) if metrics is not None else None
        self._changed = threading.Condition()
        self._free_slots = schedule.num_batch_threads
        self._queues: dict[QueueKey, deque[_Batch]] = {}  # pending batches, oldest first

    def run(self, key: QueueKey, arrays: dict[str, np.ndarray], rows: int,
            run: RunBatch) -> dict[str, np.ndarray]:
        """`run` on a batch holding these rows; `key` names what may be merged (one model
        version, signature and input shapes); `rows` is the arrays' 0th dimension."""
        task = _Task(arrays, rows, time.monotonic())
        if self._metrics is not None:
            self._metrics.input_sizes(arrays)
        with self._changed:
            self._enqueue(key, task, run)
            self._changed.notify_all()
            while not task.done:
                batch = task.batch
                wait = self._wait_s(batch)
                if wait == 0:
                    if self._free_slots:
                        self._run_batch(batch)
                        continue
                    wait = None  # until a slot frees
                self._changed.wait(wait)
        if task.error is not None:
            raise task.error
        return task.outputs

    # ------------------------------------------------------------ under self._changed
    def _enqueue(self, key: QueueKey, task: _Task, run: RunBatch) -> None:
        queue = self._queues.setdefault(key, deque())
        open_batch = queue[-1] if queue and not queue[-1].closed else None
        if open_batch is not None and open_batch.rows + task.rows > self.schedule.batch_size:
            open_batch.closed = True
            open_batch = None
        if open_batch is None:
            needed = max(1, -(-task.rows // self.schedule.batch_size))
            if len(queue) + needed > self.schedule.max_enqueued_batches:
                if not queue:
                    del self._queues[key]
                raise ServingError(grpc.StatusCode.UNAVAILABLE, "The batch scheduling queue to "
                                   "which this task was submitted is full")
            open_batch = _Batch(key, run, task.enqueued)
            queue.append(open_batch)
        open_batch.tasks.append(task)
        open_batch.rows += task.rows
        task.batch = open_batch
        if open_batch.rows >= self.schedule.batch_size:
            open_batch.closed = True

    def _wait_s(self, batch: _Batch) -> float | None:
        """0 when the batch may run now (full, or its timeout passed); else how long until its
        timeout (None: until something changes)."""
        if batch.taken:
            return None
        if batch.closed:
            return 0
        return max(0.0, batch.opened + self.schedule.timeout_s - time.monotonic())

    def _run_batch(self, batch: _Batch) -> None:
        """Take a slot and run the batch, the lock released meanwhile; wake its requests."""
        self._free_slots -= 1
        batch.closed = batch.taken = True
        queue = self._queues[batch.key]
        queue.remove(batch)
        if not queue:
            del self._queues[batch.key]
        self._changed.release()
        try:
            _compute(batch, self.schedule, self._metrics)
        finally:
            self._changed.acquire()
            self._free_slots += 1
            for task in batch.tasks:
                if task.outputs is None and task.error is None:  # interrupted mid-batch
                    task.error = ServingError(grpc.StatusCode.INTERNAL,
                                              "the batch holding this request did not finish")
                task.done = True
            self._changed.notify_all()


def _compute(batch: _Batch, schedule: Schedule, metrics) -> None:
    """Merge the batch's inputs (padded to an allowed size), run it once, give each request its
    rows; an error is every request's. Sets each task's outputs or error, never raises."""
    tasks = batch.tasks
    started = time.monotonic()
    padded = schedule.padded_size(batch.rows)
    if metrics is not None:
        metrics.processed(tasks, started, padded, padded - batch.rows)
    try:
        if len(tasks) == 1 and padded == batch.rows:
            merged = tasks[0].arrays
        else:
            merged = {alias: np.concatenate(
                [task.arrays[alias] for task in tasks]
                + [tasks[-1].arrays[alias][:1]] * (padded - batch.rows))
                for alias in tasks[0].arrays}
        outputs = batch.run(merged)
        for alias, array in outputs.items():
            if np.ndim(array) == 0 or len(array) != padded:
                raise failed_precondition(
                    "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                    f"dimension sizes of the input tensors (output {alias})")
        start = 0
        for task in tasks:
            task.outputs = {alias: array[start:start + task.rows]
                            for alias, array in outputs.items()}
            start += task.rows
    except Exception as error:  # noqa: BLE001 - each waiting request gets the batch's error
        for task in tasks:
            task.error = error
