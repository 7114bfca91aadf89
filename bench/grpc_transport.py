"""gRPC transport alone: a 512^2 uint8 PredictRequest (256 KiB) to a handler that answers at once.

    .venv/bin/python bench/grpc_transport.py [--calls 300] [--rounds 6] [--handler-ms 0,17]

bench/serving.py compares whole calls (transport + model); this isolates what the transport
costs, and whether gRPC settings change it, one setting per row (each row its own server
process, own GIL, as `mspipe serve`; rows alternate in rounds so other load hits all alike).
The server is a grpc.server with the local model server's executor and options
(serving/server/grpc_server.py), whose Predict answers the model server's reply (probability and
logit as float_val) without running a model; the client sends ModelClient's request
(serving/client/model_client.py build_request) over a channel with ModelClient's options.
Printed: p50 / mean latency and CPU per call of the client (this process) and the server.
Rows: "ours" (ModelClient's channel: retry policy on, retry buffer = message limit), the
client's retry buffer at gRPC's default 256 KiB (what the client had before: gRPC commits a
call over it, so no retry buffering), retries off, HTTP/2 settings on both sides
(`grpc.http2.lookahead_bytes`, `grpc.http2.bdp_probe`, `grpc.http2.max_frame_size`,
`grpc.http2.write_buffer_size`: grpc C-core arg names, grpcio 1.65), and a grpc.aio server.

--handler-ms: the "ours" row again with a handler that waits that long (time.sleep: no CPU,
no TensorFlow) before answering, as long as a 512^2 model call; each such row also prints the
time outside the handler (client latency minus the handler's own time, sent back in trailing
metadata) and CPU per call. It answers: does the transport cost more when the call waits?

Findings: see bench/serving.py's docstring (where the gRPC overhead goes).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from components.contract import LOGIT, PROBABILITY  # noqa: E402
from serving.api.protos import predict_pb2, prediction_service_pb2_grpc  # noqa: E402
from serving.api.tensor_codec import to_tensor_proto  # noqa: E402
from serving.server.settings import INT32_MAX, FOUR_THREADS_PER_CPU  # noqa: E402

SERVER_OPTIONS = [("grpc.max_receive_message_length", INT32_MAX),
                  ("grpc.max_send_message_length", INT32_MAX), ("grpc.so_reuseport", 0)]
# label, server kind, extra server options, client option overrides
HANDLER_WAIT = "handler-wait-ms"   # server option (ours): the handler sleeps this long
ROWS = [
    ("ours", "sync", {}, {}),
    ("retry buffer 256 KiB", "sync", {}, {"grpc.per_rpc_retry_buffer_size": 256 << 10}),
    ("retries off", "sync", {}, {"retries": 0}),
    ("lookahead 1 MiB both", "sync", {"grpc.http2.lookahead_bytes": 1 << 20},
     {"grpc.http2.lookahead_bytes": 1 << 20}),
    ("bdp probe off both", "sync", {"grpc.http2.bdp_probe": 0}, {"grpc.http2.bdp_probe": 0}),
    ("max frame 1 MiB both", "sync", {"grpc.http2.max_frame_size": 1 << 20},
     {"grpc.http2.max_frame_size": 1 << 20}),
    ("write buffer 1 MiB both", "sync", {"grpc.http2.write_buffer_size": 1 << 20},
     {"grpc.http2.write_buffer_size": 1 << 20}),
    ("grpc.aio server", "aio", {}, {}),
]


def reply(request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """The model server's reply for one image (grpc_services.py), without the model."""
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    response.model_spec.version.value = 1
    for alias in (PROBABILITY, LOGIT):
        response.outputs[alias].CopyFrom(
            to_tensor_proto(np.zeros(1, np.float32), typed_values=True))
    return response


class Immediate(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, wait_s: float = 0.0):
        self.wait_s = wait_s

    def Predict(self, request, context):
        started = time.perf_counter()
        if self.wait_s:
            time.sleep(self.wait_s)
        answer = reply(request)
        context.set_trailing_metadata(
            (("handler-ms", f"{(time.perf_counter() - started) * 1000:.4f}"),))
        return answer


class ImmediateAsync(prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request, context):
        started = time.perf_counter()
        answer = reply(request)
        context.set_trailing_metadata(
            (("handler-ms", f"{(time.perf_counter() - started) * 1000:.4f}"),))
        return answer


def serve(kind: str, extra: dict) -> None:
    """Child process: print the port, serve until killed."""
    wait_s = extra.pop(HANDLER_WAIT, 0) / 1000
    options = SERVER_OPTIONS + list(extra.items())
    if kind == "aio":
        async def run():
            server = grpc.aio.server(options=options)
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
                ImmediateAsync(), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            print(port, flush=True)
            await server.wait_for_termination()
        asyncio.run(run())
        return
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=FOUR_THREADS_PER_CPU),
                         options=options, maximum_concurrent_rpcs=FOUR_THREADS_PER_CPU * 8)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Immediate(wait_s),
                                                                        server)
    print(server.add_insecure_port("127.0.0.1:0"), flush=True)
    server.start()
    server.wait_for_termination()


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_stub(port: int, overrides: dict):
    """ModelClient's channel options with `overrides` (a ClientSettings field or a gRPC arg)."""
    from dataclasses import fields, replace

    from serving.client.model_client import channel_options
    from serving.client.settings import ClientSettings

    names = {field.name for field in fields(ClientSettings)}
    settings = replace(ClientSettings(), **{k: v for k, v in overrides.items() if k in names})
    options = dict(channel_options(settings))
    options.update({k: v for k, v in overrides.items() if k not in names})
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=list(options.items()))
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per row, all rounds")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--handler-ms", default="",
                        help="comma-separated handler waits (ms): one more 'ours' row each")
    args = parser.parse_args()
    waits = [float(ms) for ms in args.handler_ms.split(",") if ms.strip()]

    from serving.client.model_client import ModelClient

    image = np.random.default_rng(0).integers(0, 256, (1, 512, 512, 1), dtype=np.uint8)
    builder = ModelClient.__new__(ModelClient)  # build_request needs only the model name
    builder.model_name, builder.signature_name = "default", "serving_default"
    rows = []
    table = ROWS + [(f"ours, handler waits {ms:g} ms", "sync", {HANDLER_WAIT: ms}, {})
                    for ms in waits]
    try:
        for label, kind, server_extra, client_extra in table:
            process = subprocess.Popen(
                [sys.executable, __file__, "--serve", kind, json.dumps(server_extra)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            rows.append((label, process, *open_stub(int(process.stdout.readline()),
                                                    client_extra), [], [0.0, 0.0], []))
        for _, _, _, stub, _, _, _ in rows:  # connection set-up
            for _ in range(20):
                stub.Predict(builder.build_request(image), timeout=30)
        per_round = max(1, args.calls // args.rounds)
        for round_index in range(args.rounds):
            order = rows[round_index % len(rows):] + rows[:round_index % len(rows)]
            for _, process, _, stub, latencies, cpu, outside in order:
                own, served = time.process_time(), process_cpu_s(process.pid)
                for _ in range(per_round):
                    started = time.perf_counter()
                    _, call = stub.Predict.with_call(builder.build_request(image), timeout=30)
                    latencies.append(time.perf_counter() - started)
                    handler_ms = float(dict(call.trailing_metadata() or ()).get("handler-ms", 0))
                    outside.append(latencies[-1] - handler_ms / 1000)
                cpu[0] += time.process_time() - own
                cpu[1] += process_cpu_s(process.pid) - served
        print(f"\ngRPC transport only: 1 client, batch-1 512^2 uint8 request, "
              f"{args.rounds} rounds x {per_round} calls, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"{'row':>30} {'p50 ms':>7} {'mean ms':>8} {'outside handler p50':>19} "
              f"{'client CPU ms':>13} {'server CPU ms':>13}")
        for label, _, _, _, latencies, (own, served), outside in rows:
            calls = len(latencies)
            print(f"{label:>30} {statistics.median(latencies) * 1000:7.3f} "
                  f"{statistics.fmean(latencies) * 1000:8.3f} "
                  f"{statistics.median(outside) * 1000:19.3f} {own / calls * 1000:13.3f} "
                  f"{served / calls * 1000:13.3f}")
    finally:
        for _, process, channel, *_ in rows:
            channel.close()
            process.kill()
            process.wait()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], json.loads(sys.argv[3]))
    else:
        sys.exit(main())
