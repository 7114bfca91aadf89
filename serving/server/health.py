"""grpc.health.v1.Health as TF Serving 2.16 serves it, behind --enable_grpc_healthcheck_service.

TF Serving (model_servers/server.cc) turns on gRPC's default health service when the flag is
given and marks its two API services SERVING once the server is built, that is after the
models of the first config loaded (the port is not open before). So a Check answers:
- "" (the whole server), "tensorflow.serving.ModelService", "tensorflow.serving.PredictionService":
  SERVING while up, NOT_SERVING once shutdown starts (gRPC's Server::Shutdown);
- any other name, a model name included: NOT_FOUND;
- without the flag there is no health service at all: UNIMPLEMENTED.
The local server does the same, so a probe written for one works on the other.
"""
from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

MODEL_SERVICE = "tensorflow.serving.ModelService"
PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
HEALTH_SERVICES = ("", MODEL_SERVICE, PREDICTION_SERVICE)


def add_health_service(server: grpc.Server, enabled: bool) -> health.HealthServicer | None:
    """Register the health service on `server` when `enabled` (the flag); None otherwise.
    Call once the first config is loaded, as TF Serving builds its server only then."""
    if not enabled:
        return None
    servicer = health.HealthServicer(experimental_non_blocking=True)
    for service in HEALTH_SERVICES:
        servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer
