"""The merging of concurrent requests (serving/server/batching.py BatchScheduler), as TF
Serving's SharedBatchScheduler + BatchingSession merge them: what joins a batch, when a batch
may run, how many run at once, padding, the queue limit, and errors. Pure Python: the "model"
is a function of numpy arrays that records what it was called with."""
from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest

from serving.api.errors import ServingError, invalid_argument
from serving.server.batching import BatchScheduler, Schedule


class Model:
    """Doubles its input; records each call's rows; can be held inside a call."""

    def __init__(self):
        self.calls: list[np.ndarray] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.threads: list[str] = []

    def __call__(self, arrays):
        self.calls.append(arrays["x"].copy())
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        assert self.release.wait(10)
        return {"y": arrays["x"] * 2, "n": np.arange(len(arrays["x"]))}


def rows(start: int, count: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(start, start + count, dtype=np.int64).reshape(count, 1)}


def submit(scheduler, model, arrays, key="m", results=None, index=0):
    try:
        out = scheduler.run(key, arrays, len(arrays["x"]), model)
    except ServingError as error:
        out = error
    if results is not None:
        results[index] = out
    return out


def start(scheduler, model, arrays, results, index, key="m") -> threading.Thread:
    """One request in its own thread; its answer (or ServingError) lands in results[index]."""
    thread = threading.Thread(target=submit, args=(scheduler, model, arrays),
                              kwargs={"key": key, "results": results, "index": index})
    thread.start()
    return thread


def join(*threads: threading.Thread) -> None:
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def waiting(scheduler, count, key="m"):
    """Block until `count` requests sit in `key`'s pending batches."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with scheduler._changed:
            pending = sum(len(b.tasks) for b in scheduler._queues.get(key, ()))
        if pending >= count:
            return
        time.sleep(0.001)
    raise AssertionError(f"{count} requests never queued")


def held_first_call(scheduler, model):
    """Start one request and hold it inside the model: the only slot is busy."""
    model.release.clear()
    results = {}
    first = start(scheduler, model, rows(100, 1), results, "first")
    assert model.entered.wait(10)
    return first, results


def test_a_lone_request_runs_at_once_in_its_own_thread():
    model = Model()
    scheduler = BatchScheduler(Schedule(batch_size=8, num_batch_threads=1))
    out = submit(scheduler, model, rows(0, 3))
    np.testing.assert_array_equal(out["y"][:, 0], [0, 2, 4])
    assert model.threads == [threading.current_thread().name]
    assert scheduler._queues == {}  # nothing left behind


def test_requests_arriving_while_the_model_is_busy_run_as_one_batch():
    model = Model()
    scheduler = BatchScheduler(Schedule(batch_size=8, num_batch_threads=1))
    first, results = held_first_call(scheduler, model)
    threads = [start(scheduler, model, rows(10 * i, i + 1), results, i) for i in range(3)]
    waiting(scheduler, 3)
    model.release.set()
    join(*threads, first)
    assert [len(call) for call in model.calls] == [1, 6]  # the three merged: 1 + 2 + 3 rows
    for i in range(3):  # each gets its own rows back, in its own order
        np.testing.assert_array_equal(results[i]["y"][:, 0], 2 * np.arange(10 * i, 11 * i + 1))
        assert len(results[i]["n"]) == i + 1


def test_a_batch_never_holds_more_than_the_batch_size():
    model = Model()
    scheduler = BatchScheduler(Schedule(batch_size=4, num_batch_threads=1))
    first, results = held_first_call(scheduler, model)
    threads = [start(scheduler, model, rows(10 * i, 2), results, i) for i in range(3)]
    waiting(scheduler, 3)
    model.release.set()
    join(*threads, first)
    assert sorted(len(call) for call in model.calls[1:]) == [2, 4]
    for i in range(3):
        np.testing.assert_array_equal(results[i]["y"][:, 0], [20 * i, 20 * i + 2])


def test_different_keys_are_never_merged():
    model = Model()
    scheduler = BatchScheduler(Schedule(batch_size=8, num_batch_threads=1))
    first, results = held_first_call(scheduler, model)
    threads = [start(scheduler, model, rows(i, 1), results, i, key)
               for i, key in enumerate(["a", "b", "a"])]
    waiting(scheduler, 2, "a")
    waiting(scheduler, 1, "b")
    model.release.set()
    join(*threads, first)
    assert sorted(len(call) for call in model.calls[1:]) == [1, 2]


def test_at_most_num_batch_threads_batches_run_at_once():
    lock, running, peak = threading.Lock(), [0], [0]

    def model(arrays):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return {"y": arrays["x"]}

    scheduler = BatchScheduler(Schedule(batch_size=1, num_batch_threads=2,
                                        max_enqueued_batches=100))
    threads = [threading.Thread(target=scheduler.run, args=("m", rows(i, 1), 1, model))
               for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert peak[0] == 2


@pytest.mark.parametrize("batch_size, timeout_s", [(8, 0.5), (2, 60.0)],
                         ids=["timeout passes", "full before the timeout"])
def test_a_batch_runs_when_its_timeout_passes_or_when_it_is_full(batch_size, timeout_s):
    """The first request waits in its batch: for the timeout (0.5 s), during which the second
    joins; or, when the second fills the batch, not at all (a 60 s timeout would fail the
    join)."""
    model = Model()
    scheduler = BatchScheduler(Schedule(batch_size=batch_size, num_batch_threads=1,
                                        timeout_s=timeout_s))
    results = {}
    first = start(scheduler, model, rows(0, 1), results, 0)
    waiting(scheduler, 1)
    submit(scheduler, model, rows(1, 1), results=results, index=1)
    join(first)
    assert [len(call) for call in model.calls] == [2]


def test_batches_are_padded_to_an_allowed_size_with_the_last_requests_first_row():
    model = Model()
    scheduler = BatchScheduler(Schedule(batch_size=8, num_batch_threads=1,
                                        allowed_batch_sizes=(4, 8)))
    out = submit(scheduler, model, rows(5, 3))
    np.testing.assert_array_equal(model.calls[0][:, 0], [5, 6, 7, 5])
    np.testing.assert_array_equal(out["y"][:, 0], [10, 12, 14])  # padding rows dropped


def test_a_full_queue_refuses_with_unavailable_and_the_server_goes_on():
    model = Model()
    scheduler = BatchScheduler(Schedule(batch_size=1, num_batch_threads=1,
                                        max_enqueued_batches=1))
    first, results = held_first_call(scheduler, model)
    queued = start(scheduler, model, rows(1, 1), results, "queued")
    waiting(scheduler, 1)
    refused = submit(scheduler, model, rows(2, 1))
    assert isinstance(refused, ServingError) and refused.code == grpc.StatusCode.UNAVAILABLE
    assert "batch scheduling queue" in refused.details and "is full" in refused.details
    model.release.set()
    join(queued, first)
    np.testing.assert_array_equal(results["queued"]["y"][:, 0], [2])
    np.testing.assert_array_equal(submit(scheduler, model, rows(3, 1))["y"][:, 0], [6])


def test_an_error_reaches_every_request_of_the_batch_and_no_other():
    model = Model()
    scheduler = BatchScheduler(Schedule(batch_size=8, num_batch_threads=1))
    first, results = held_first_call(scheduler, model)

    def failing(arrays):
        raise invalid_argument("bad batch")

    threads = [start(scheduler, failing, rows(i, 1), results, i) for i in range(3)]
    waiting(scheduler, 3)
    model.release.set()
    join(*threads, first)
    np.testing.assert_array_equal(results["first"]["y"][:, 0], [200])
    for i in range(3):
        assert isinstance(results[i], ServingError) and results[i].details == "bad batch"
    np.testing.assert_array_equal(submit(scheduler, model, rows(7, 1))["y"][:, 0], [14])


def test_outputs_that_are_not_one_row_per_input_row_are_refused():
    scheduler = BatchScheduler(Schedule(batch_size=8, num_batch_threads=1))
    out = submit(scheduler, lambda arrays: {"y": np.zeros(1)}, rows(0, 3))
    assert isinstance(out, ServingError) and out.code == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("allowed", [(), (3, 6, 12)])
def test_many_concurrent_requests_each_get_exactly_their_rows(allowed):
    scheduler = BatchScheduler(Schedule(batch_size=12, num_batch_threads=2,
                                        allowed_batch_sizes=allowed, max_enqueued_batches=100))
    sizes = []

    def model(arrays):
        sizes.append(len(arrays["x"]))
        time.sleep(0.002)
        return {"y": arrays["x"] * 2}

    rng = np.random.default_rng(0)
    requests = [(int(rng.integers(0, 1000)), int(rng.integers(1, 5))) for _ in range(60)]
    results = {}
    join(*[start(scheduler, model, rows(first_row, count), results, i)
           for i, (first_row, count) in enumerate(requests)])
    for i, (first_row, count) in enumerate(requests):
        np.testing.assert_array_equal(results[i]["y"][:, 0],
                                      2 * np.arange(first_row, first_row + count))
    assert max(sizes) <= 12 and sum(sizes) >= sum(count for _, count in requests)
    assert scheduler._queues == {}
