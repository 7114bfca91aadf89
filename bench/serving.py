"""Serving overhead: gRPC and REST through the local server vs. in-process calls, same run.

    .venv/bin/python bench/serving.py [--image-size 512] [--calls 40] [--rounds 2]

Model: the Trainer's real architecture (components/trainer/model.py, untrained weights: compute
is what matters) exported with its real signatures, served by `mspipe serve` in a subprocess
(its own GIL, as in production). For 1, 2 and 4 concurrent clients each sending batch-1
requests, it prints p50/p99 latency and throughput for each path and its ratio to in-process,
plus the client's encode time per image (PredictRequest build + serialisation). REST sends the
same image as TF Serving's row JSON (`{"instances": [...]}`, a nested list, encoded per call)
to :predict on --rest_api_port, with one keep-alive HTTP session per client. In-process, gRPC
and REST rounds alternate, so load from other processes hits all alike.
Goals: p50 <= 1.25x in-process at 1 client; throughput >= 0.9x at 4 clients; encode <= 1 ms.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def export_model(base_path: Path, image_size: int) -> Path:
    """Build + export in a child process, so this process holds only the loaded SavedModel,
    exactly like the server process (a Keras model left in memory skews the comparison)."""
    version_dir = base_path / "1"
    code = ("import sys; from components.trainer.export import export_serving_model;"
            "from components.trainer.config import ModelConfig;"
            "from components.trainer.model import build_model;"
            "size = int(sys.argv[1]);"
            "export_serving_model(build_model(ModelConfig(image_size=size)), size, sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(image_size), str(version_dir)], check=True,
                   cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.DEVNULL)
    return version_dir


def free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(config_path: Path, rest_port: int) -> tuple[subprocess.Popen, str]:
    """`mspipe serve` on a free gRPC port (0) and REST on rest_port; returns the process and
    the gRPC address it printed."""
    command = [sys.executable, "-m", "mspipe.main", "serve", "--model_config_file",
               str(config_path), "--port", "0", "--rest_api_port", str(rest_port),
               "--log-level", "WARNING"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    line = server.stdout.readline()
    if "Serving" not in line:
        server.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return server, line.rsplit(" on ", 1)[1].strip()


def run_clients(call, clients: int, calls: int) -> tuple[list[float], float]:
    """`clients` threads, each making `calls` calls; returns latencies (s) and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker(index: int):
        own = []
        barrier.wait()
        for _ in range(calls):
            started = time.perf_counter()
            call(index)
            own.append(time.perf_counter() - started)
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def encode_ms(client, image: np.ndarray, repeats: int = 300) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        client.build_request(image).SerializeToString()
    return (time.perf_counter() - started) / repeats * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--calls", type=int, default=8, help="calls per client per round")
    parser.add_argument("--rounds", type=int, default=8,
                        help="alternating in-process / gRPC rounds per concurrency")
    parser.add_argument("--clients", default="1,2,4")
    args = parser.parse_args()

    import requests
    import tensorflow as tf

    from components import contract
    from serving.client.model_client import ModelClient
    from serving.api.model_config import build_model_config, model_entry, write_model_config

    size, concurrency = args.image_size, [int(c) for c in args.clients.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    base_path = work / contract.DEFAULT_MODEL_NAME
    version_dir = export_model(base_path, size)
    write_model_config(work / "models.config", build_model_config(
        [model_entry(contract.DEFAULT_MODEL_NAME, base_path)]))
    rest_port = free_port()
    server, address = start_server(work / "models.config", rest_port)
    try:
        function = tf.saved_model.load(str(version_dir)).signatures[contract.SERVING_DEFAULT]
        images = np.random.default_rng(0).integers(0, 256, (8, size, size, 1), dtype=np.uint8)
        clients = [ModelClient(address) for _ in range(max(concurrency))]
        sessions = [requests.Session() for _ in range(max(concurrency))]
        rest_url = (f"http://{address.rsplit(':', 1)[0]}:{rest_port}/v1/models/"
                    f"{contract.DEFAULT_MODEL_NAME}:predict")

        def in_process(index: int):
            batch = tf.constant(images[index % 8:index % 8 + 1])
            function(**{contract.IMAGE_INPUT: batch})[contract.PROBABILITY].numpy()

        def through_grpc(index: int):
            clients[index].predict_tensors(images[index % 8:index % 8 + 1])

        def through_rest(index: int):
            body = json.dumps({"instances": images[index % 8:index % 8 + 1].tolist()})
            reply = sessions[index].post(rest_url, data=body, timeout=120)
            reply.raise_for_status()
            reply.json()["predictions"]

        paths = (("in-process", in_process), ("gRPC", through_grpc), ("REST", through_rest))
        for _, warm in paths:  # graph optimisation, channel and connection set-up
            run_clients(warm, max(concurrency), 3)
        results = {(mode, c): ([], 0.0, 0) for mode, _ in paths for c in concurrency}
        for _ in range(args.rounds):
            for c in concurrency:
                for mode, call in paths:
                    latencies, wall = run_clients(call, c, args.calls)
                    old = results[(mode, c)]
                    results[(mode, c)] = (old[0] + latencies, old[1] + wall, old[2] + len(latencies))
        encode = statistics.median(encode_ms(clients[0], images[:1]) for _ in range(5))
        print_table(results, concurrency, size, encode, args)
        for client in clients:
            client.close()
        for session in sessions:
            session.close()
    finally:
        server.terminate()
        server.wait(timeout=60)
    return 0


def print_table(results, concurrency, size, encode, args) -> None:
    print(f"\nserving benchmark: real Trainer architecture at {size}x{size}, batch 1, "
          f"{args.rounds} rounds x {args.calls} calls per client, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} (other processes skew all paths alike)")
    print(f"{'clients':>7} {'path':>10} {'p50 ms':>8} {'p99 ms':>8} {'img/s':>7} "
          f"{'p50 ratio':>9} {'img/s ratio':>11}")
    ratios = {}
    for c in concurrency:
        base_lat, base_wall, base_n = results[("in-process", c)]
        for mode in ("in-process", "gRPC", "REST"):
            latencies, wall, count = results[(mode, c)]
            p50, p99, rate = percentile(latencies, 50), percentile(latencies, 99), count / wall
            p50_ratio = p50 / percentile(base_lat, 50)
            rate_ratio = rate / (base_n / base_wall)
            ratios[(mode, c)] = (p50_ratio, rate_ratio)
            print(f"{c:>7} {mode:>10} {p50:8.2f} {p99:8.2f} {rate:7.1f} {p50_ratio:9.3f} "
                  f"{rate_ratio:11.3f}")
    print(f"client encode per image (build PredictRequest + serialise): {encode:.3f} ms")
    checks = [("p50 at 1 client <= 1.25x in-process", ratios.get(("gRPC", 1), (9, 0))[0] <= 1.25),
              ("throughput at 4 clients >= 0.9x in-process",
               ratios.get(("gRPC", 4), (0, 0))[1] >= 0.9),
              ("encode <= 1 ms", encode <= 1.0)]
    for name, ok in checks:
        print(f"  {'MET ' if ok else 'MISS'} {name}")


if __name__ == "__main__":
    sys.exit(main())
