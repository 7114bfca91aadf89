"""One exception type for every refusal, on both sides of the wire: `ServingError`.

The server raises `ServingError(code, details)`; the gRPC layer turns it into that status, so a
bad request never escapes as an exception that kills a worker, and the codes match the real
`tensorflow/serving` binary (see docs in serving/server/grpc_server.py). The client
(serving/client/model_client.py) raises the same type with the status code and details the
server answered, so callers catch one thing and read `code` (a grpc.StatusCode) and `details`.
"""
from __future__ import annotations

import grpc

# Codes that say the server (or the way to it) failed, not the model version that was asked:
# when the stable version meets them too, a canary comparison has nothing to compare
# (serving/rollout/analysis.py and live.py then say "inconclusive", never "rollback").
OUTAGE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED",
                          "ABORTED"})


class ServingError(RuntimeError):
    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def invalid_argument(details: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, details)


def not_found(details: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, details)


def failed_precondition(details: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, details)


def status_code_from_value(value: int) -> grpc.StatusCode:
    """TensorFlow's error codes share gRPC's numbering (tensorflow/core/protobuf/error_codes)."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN
