"""Issue 10, points 2 and 6: batch and size limits as TF Serving's, bounded memory, whole errors.

- With --enable_batching and serving/deploy/batching_parameters.txt (max_batch_size 32), a
  64-image request is refused with TF Serving's INVALID_ARGUMENT text; 32 images are answered.
  These run against a real TF Serving too (tests/support/parity.py: --tf-serving-grpc), when it
  is started with the deploy files' batching flags.
- With batching on, concurrent requests are merged into one model call, each client gets the
  answers for its own images, and TF Serving's batching-session metrics count it.
- Without batching there is no batch limit, and a request over 64 MiB is accepted (TF Serving
  accepts up to INT32_MAX bytes).
- A large batch does not raise the server's peak memory in proportion: measured on a
  `mspipe serve` subprocess (its VmHWM) around a 75 MiB, 300-image 512^2 request.
- A model that fails at run time answers with TensorFlow's whole message, not its first line.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf

from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.api.protos import predict_pb2, prediction_service_pb2_grpc
from serving.api.tensor_codec import from_tensor_proto, to_tensor_proto
from serving.client.model_client import ModelClient
from serving.server.batching import BatchingConfigError, batch_limits
from support.parity import parity_server_settings, parity_target  # noqa: F401 - fixtures
from support.serving_fixtures import (MODEL_NAME, free_port, random_images, reference_predict,
                                      running_server, save_version)

REPO = Path(__file__).resolve().parents[2]
DEPLOY_BATCHING = REPO / "serving" / "deploy" / "batching_parameters.txt"
DEPTH_MODEL = "depth_checked"
BIG_CHANNEL = [("grpc.max_send_message_length", 256 << 20),
               ("grpc.max_receive_message_length", 256 << 20)]
MIB = 1 << 20


@pytest.fixture(scope="module")
def parity_server_settings():  # noqa: F811 - overrides support.parity's fixture
    """As the deploy files start TF Serving: batching on with the deploy parameters."""
    return {"enable_batching": True, "batching_parameters_file": str(DEPLOY_BATCHING)}


def predict(channel: grpc.Channel, images: np.ndarray, model: str = MODEL_NAME,
            timeout: float = 60) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["image"].CopyFrom(to_tensor_proto(images))
    return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        request, timeout=timeout)


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# ------------------------------------------------------------------ batching on (parity)
def test_request_over_max_batch_size_is_refused_as_tf_serving(parity_target):
    with ModelClient(parity_target.grpc_address, parity_target.model_name) as client:
        size = client.metadata().image_size
    with parity_target.channel() as channel:
        error = refused(lambda: predict(channel, random_images(64, size), parity_target.model_name))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "Task size 64 is larger than maximum input batch size 32"
        reply = predict(channel, random_images(32, size), parity_target.model_name)
        assert len(from_tensor_proto(reply.outputs["probability"])) == 32


def test_batching_parameters_follow_tf_serving_rules(tmp_path):
    """Load-time rules of TF Serving (server.cc, bundle_factory_util.h); default limit 1000."""
    assert batch_limits(False, None).max_input_size is None
    assert batch_limits(False, None).schedule is None  # no merging without batching
    defaults = batch_limits(True, None)
    assert defaults.max_input_size == 1000
    assert (defaults.schedule.batch_size, defaults.schedule.timeout_s,
            defaults.schedule.max_enqueued_batches, defaults.schedule.num_batch_threads,
            defaults.schedule.thread_pool_name) == (
        1000, 0.0, 10, len(os.sched_getaffinity(0)), "model_server_batch_threads")
    deploy = batch_limits(True, str(DEPLOY_BATCHING))
    assert (deploy.max_input_size, deploy.run_chunk) == (32, 32)
    assert deploy.schedule.thread_pool_name == "batch_threads"
    with pytest.raises(BatchingConfigError, match="without setting server_options.enable_batching"):
        batch_limits(False, str(DEPLOY_BATCHING))
    bad_sizes = tmp_path / "sizes.txt"
    bad_sizes.write_text("max_batch_size { value: 32 } allowed_batch_sizes: 8 "
                         "allowed_batch_sizes: 16")
    with pytest.raises(BatchingConfigError, match="Last entry in allowed_batch_sizes must match "
                                                  "max_batch_size; last entry was 16; expected 32"):
        batch_limits(True, str(bad_sizes))
    splitting = tmp_path / "split.txt"
    splitting.write_text("max_batch_size { value: 64 } enable_large_batch_splitting { value: true }"
                         " max_execution_batch_size { value: 8 }")
    split = batch_limits(True, str(splitting))
    assert (split.max_input_size, split.run_chunk) == (64, 8)  # splitting keeps the input limit
    assert split.schedule.batch_size == 8  # and merges up to the execution batch size
    padded = tmp_path / "padded.txt"
    padded.write_text("max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 8")
    assert [batch_limits(True, str(padded)).schedule.padded_size(n) for n in (1, 2, 3, 8)] == \
        [2, 2, 8, 8]
    threads = tmp_path / "threads.txt"
    threads.write_text("num_batch_threads { value: 0 }")
    with pytest.raises(BatchingConfigError, match="num_batch_threads must be positive"):
        batch_limits(True, str(threads))
    typo = tmp_path / "typo.txt"
    typo.write_text("max_batch_sise { value: 32 }")
    with pytest.raises(BatchingConfigError, match="not a BatchingParameters text proto"):
        batch_limits(True, str(typo))


def _batching_samples(server) -> dict[tuple[str, str], float]:
    """{(sample name, thread_pool_name label or ""): value} of the batching-session series."""
    from prometheus_client.parser import text_string_to_metric_families
    url = f"http://{server.rest_address}/monitoring/prometheus/metrics"
    with urllib.request.urlopen(url, timeout=60) as reply:
        text = reply.read().decode()
    return {(sample.name, sample.labels.get("thread_pool_name", "")): sample.value
            for family in text_string_to_metric_families(text)
            if family.name.startswith(":tensorflow:serving:batching_session:")
            for sample in family.samples if sample.name.endswith(("_count", "_sum"))}


def test_concurrent_requests_are_merged_into_one_model_call(tmp_path):
    """Four clients at once, max_batch_size 4, a timeout far longer than the test: the batch
    runs when the fourth request fills it, once, and each client gets its own image's answer."""
    version = save_version(tmp_path / MODEL_NAME, 1)
    write_model_config(tmp_path / "models.config",
                       build_model_config([model_entry(MODEL_NAME, tmp_path / MODEL_NAME)]))
    parameters = tmp_path / "batching.txt"
    parameters.write_text("max_batch_size { value: 4 } batch_timeout_micros { value: 20000000 } "
                          "num_batch_threads { value: 1 } thread_pool_name { value: 'pool' }")
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true }')
    images = random_images(4, seed=9)
    expected = reference_predict(version, images)["probability"]
    with running_server(tmp_path / "models.config", enable_batching=True,
                        batching_parameters_file=str(parameters), rest_api_port=free_port(),
                        monitoring_config_file=str(monitoring)) as server:
        before = _batching_samples(server)
        barrier, answers = threading.Barrier(4), {}

        def client(index: int) -> None:
            with grpc.insecure_channel(server.address) as channel:
                barrier.wait()
                reply = predict(channel, images[index:index + 1])
                answers[index] = from_tensor_proto(reply.outputs["probability"])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        after = _batching_samples(server)
    for index in range(4):
        np.testing.assert_allclose(answers[index], expected[index:index + 1], rtol=1e-5,
                                   atol=1e-6)

    def grew(name: str, pool: str = "") -> float:
        return after[(name, pool)] - before.get((name, pool), 0.0)

    prefix = ":tensorflow:serving:batching_session:"
    assert grew(prefix + "processed_batch_size_count") == 1  # one model call ...
    assert grew(prefix + "processed_batch_size_sum") == 4    # ... of the four images
    assert grew(prefix + "input_batch_size_count") == 4
    assert grew(prefix + "queuing_latency_count", "pool") == 4


# ------------------------------------------------------------------ batching off, errors
class DepthCheckedModel(tf.Module):
    """A conv whose filter takes 2 channels behind a signature that accepts any depth, so a
    wrong depth fails inside TensorFlow with a multi-line message."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(np.ones((3, 3, 2, 4), np.float32))
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None, 8, 8, None], tf.uint8, name="image")])

    def _serve(self, image):
        features = tf.nn.conv2d(tf.cast(image, tf.float32), self.kernel, 1, "SAME")
        return {"probability": tf.reshape(tf.reduce_mean(features, [1, 2, 3]), [-1])}


@pytest.fixture(scope="module")
def unbatched_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("unbatched")
    version = save_version(root / MODEL_NAME, 1)
    module = DepthCheckedModel()
    tf.saved_model.save(module, str(root / DEPTH_MODEL / "1"),
                        signatures={"serving_default": module.serve})
    write_model_config(root / "models.config", build_model_config([
        model_entry(MODEL_NAME, root / MODEL_NAME), model_entry(DEPTH_MODEL, root / DEPTH_MODEL)]))
    with running_server(root / "models.config") as server, \
            grpc.insecure_channel(server.address, options=BIG_CHANNEL) as channel:
        yield server, channel, version


def test_without_batching_a_large_batch_is_answered_whole(unbatched_server):
    server, channel, version = unbatched_server
    assert server.settings.max_message_bytes == (1 << 31) - 1  # TF Serving's INT32_MAX
    images = random_images(100, seed=5)  # more than one run chunk (32)
    reply = predict(channel, images)
    expected = reference_predict(version, images)
    for name in ("probability", "logit"):
        np.testing.assert_allclose(from_tensor_proto(reply.outputs[name]), expected[name],
                                   rtol=1e-5, atol=1e-6)


def test_request_over_64_mib_is_accepted(unbatched_server):
    _, channel, _ = unbatched_server
    images = np.zeros((75 * MIB // (32 * 32), 32, 32, 1), np.uint8)  # 75 MiB of pixels
    images[::997] = 255
    reply = predict(channel, images, timeout=120)
    probabilities = from_tensor_proto(reply.outputs["probability"])
    assert probabilities.shape == (len(images),)
    assert len(np.unique(probabilities)) == 2  # rows are not mixed up by the chunking


@pytest.mark.parametrize("rows", [2, 0], ids=["batch", "empty batch"])
def test_tensorflow_error_text_is_passed_whole(unbatched_server, rows):
    _, channel, _ = unbatched_server
    images = np.zeros((rows, 8, 8, 3), np.uint8)
    error = refused(lambda: predict(channel, images, DEPTH_MODEL))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details()
    assert "input depth must be evenly divisible by filter depth: 3 vs 2" in details
    assert "[[{{node " in details  # the runtime's node line, which the first line dropped
    assert not details.startswith("Graph execution error")  # Python's framing, not TF Serving's
    ok = predict(channel, np.zeros((1, 8, 8, 2), np.uint8), DEPTH_MODEL)
    assert len(from_tensor_proto(ok.outputs["probability"])) == 1


# ------------------------------------------------------------------ memory
def _peak_rss_bytes(pid: int) -> int:
    """VmHWM: the process' peak resident memory so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_large_batch_does_not_grow_server_peak_memory(tmp_path):
    """300 images of 512^2 (75 MiB) after a 32-image warm-up: the model runs 32 rows at a time,
    so the peak grows by about the request's own bytes, not by the whole batch's activations
    (about 1.5 GiB for this model if run in one call)."""
    save_version(tmp_path / MODEL_NAME, 1, image_size=512)
    write_model_config(tmp_path / "models.config",
                       build_model_config([model_entry(MODEL_NAME, tmp_path / MODEL_NAME)]))
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mspipe.main", "serve", "--model_config_file",
         str(tmp_path / "models.config"), "--port", str(port)],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert "Serving" in server.stdout.readline(), server.stderr.read()
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=BIG_CHANNEL) as channel:
            predict(channel, random_images(32, 512, seed=1))
            before = _peak_rss_bytes(server.pid)
            images = random_images(300, 512, seed=2)
            assert images.nbytes > 64 * MIB
            reply = predict(channel, images, timeout=300)
            assert len(from_tensor_proto(reply.outputs["probability"])) == 300
            growth = _peak_rss_bytes(server.pid) - before
        assert growth < 600 * MIB, f"peak RSS grew by {growth / MIB:.0f} MiB"
        print(f"peak RSS growth for a 75 MiB batch: {growth / MIB:.0f} MiB")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
