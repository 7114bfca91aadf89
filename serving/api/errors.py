"""One exception type for every refusal, carrying the gRPC status code TF Serving would use.

Server code raises `ServingError(code, message)`; the gRPC layer turns it into that status, so a
bad request never escapes as an exception that kills a worker, and the codes match the real
`tensorflow/serving` binary (see docs in serving/server/grpc_server.py).
"""
from __future__ import annotations

import grpc


class ServingError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def status_code_from_value(value: int) -> grpc.StatusCode:
    """TensorFlow's error codes share gRPC's numbering (tensorflow/core/protobuf/error_codes)."""
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN
