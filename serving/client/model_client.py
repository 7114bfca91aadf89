"""Thin gRPC client for TF Serving (or the local server): numpy + grpc + protos, no TensorFlow.

    with ModelClient("127.0.0.1:8500") as client:
        result = client.predict_tensors(images)          # uint8 [N, S, S, 1]
        result.probabilities, result.model_version
        explained = client.explain_tensors(images)       # + Grad-CAM heat maps
        explained.heatmaps                                # float32 [N, S, S] in [0, 1]

- Tensors go as uint8 `tensor_content` (one memcpy, 256 KiB per 512^2 image), in batches that fit
  the message limit; replies are decoded from `tensor_content` or typed `*_val` (TF Serving's
  default reply form).
- Every call has a deadline; UNAVAILABLE is retried by gRPC itself (the channel's service-config
  retry policy: bounded attempts, exponential backoff with jitter, all within the deadline).
- After a server outage the channel reconnects within about a second of the server's return:
  gRPC's default reconnect back-off grows to 120 s (a client was seen failing for 31 s after a
  60-90 s outage); here it is capped at `RECONNECT_BACKOFF_MS["max"]`.
- A multi-batch call is answered by one model version: once the first batch reports its version,
  the remaining batches ask for exactly that version, so a study is never scored half by the old
  model and half by a canary.
- Failures raise serving.api.errors.ServingError (the server's own error type) with the gRPC
  status code and the server's details.
- Files are not its business: serving/client/predict.py turns files into tensors and calls it.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

import grpc
import numpy as np

from components.contract import (DECISION_THRESHOLD, DEFAULT_MODEL_NAME, HEATMAP, IMAGE_INPUT,
                                 LOGIT, PROBABILITY, SERVING_DEFAULT, SERVING_EXPLAIN,
                                 THRESHOLD_OUTPUT)
from serving.api.errors import ServingError
from serving.api.protos import (SIGNATURE_DEF_FIELD, get_model_metadata_pb2,
                            get_model_status_pb2, model_management_pb2, model_pb2,
                            model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                            types_pb2)
from serving.api.tensor_codec import (dtype_name, from_tensor_proto, output_tensors, shape_of,
                                      to_tensor_proto)
from serving.client.settings import ClientSettings

_T = TypeVar("_T")
# Reloading is left to the caller to repeat: it is an administrative action, not a query.
_NOT_RETRIED = ({"service": "tensorflow.serving.ModelService",
                 "method": "HandleReloadConfigRequest"},)
# The channel's reconnect back-off (gRPC core's defaults: 1 s, growing x1.6 to 120 s; 20 s minimum
# connect timeout). `min` is each connection attempt's timeout: 1 s suits a LAN or loopback
# TCP + TLS handshake. A refused connection is retried after at most `max` (+-20% jitter).
RECONNECT_BACKOFF_MS = {"initial": 100, "min": 1000, "max": 1000}


@dataclass(frozen=True)
class ModelMetadata:
    """What the client needs from GetModelMetadata's serving_default SignatureDef."""
    model_name: str
    model_version: int
    signature_name: str
    input_name: str
    input_dtype: str
    image_size: int
    output_names: tuple[str, ...]
    signature_names: tuple[str, ...]

    @property
    def has_threshold(self) -> bool:
        """Whether the model carries its own operating threshold (contract.THRESHOLD_OUTPUT)."""
        return THRESHOLD_OUTPUT in self.output_names


@dataclass(frozen=True)
class PredictResult:
    probabilities: np.ndarray  # float32 [N]
    logits: np.ndarray | None  # float32 [N] when the signature returns them
    model_name: str
    model_version: int         # from PredictResponse.model_spec: who actually answered
    signature_name: str
    model_threshold: float | None = None  # the answering model's own operating threshold

    @property
    def decision_threshold(self) -> float:
        """Study probability > this = MS: the model's own, else contract.DECISION_THRESHOLD."""
        return DECISION_THRESHOLD if self.model_threshold is None else self.model_threshold

    @property
    def threshold_source(self) -> str:
        """"model" (chosen on validation studies, stored in the SavedModel) or "fallback"."""
        return "fallback" if self.model_threshold is None else "model"


@dataclass(frozen=True)
class ExplainResult:
    """serving_explain's answer: the prediction and where the model looked."""
    prediction: PredictResult
    heatmaps: np.ndarray       # float32 [N, S, S]: Grad-CAM, each map scaled to [0, 1]


@dataclass(frozen=True)
class VersionState:
    version: int
    state: str          # START | LOADING | AVAILABLE | UNLOADING | END
    error_code: int
    error_message: str


class ModelClient:
    def __init__(self, target: str, model_name: str = DEFAULT_MODEL_NAME, *,
                 tls_ca: str | None = None, signature_name: str = SERVING_DEFAULT,
                 settings: ClientSettings | None = None, **overrides):
        """`overrides` are ClientSettings fields (timeout_s=..., retries=...)."""
        self.target = target
        self.model_name = model_name
        self.signature_name = signature_name
        self.settings = replace(settings or ClientSettings(), **overrides)
        self._channel = _open_channel(target, tls_ca, self.settings)
        self._predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ModelClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ metadata / status
    def metadata(self, *, label: str | None = None, version: int | None = None) -> ModelMetadata:
        response, signature_map = self._signature_defs(label, version)
        return _metadata_from(response, signature_map, self.signature_name)

    def signature_defs(self, *, label: str | None = None, version: int | None = None):
        """The version's whole SignatureDefMap (every signature, input and output), for
        comparing two versions (the rollout's pre-flight)."""
        return self._signature_defs(label, version)[1]

    def _signature_defs(self, label: str | None, version: int | None):
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._model_spec(label, version), metadata_field=[SIGNATURE_DEF_FIELD])
        response = self._call(self._predict_stub.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
        return response, signature_map

    def model_status(self, *, label: str | None = None,
                     version: int | None = None) -> list[VersionState]:
        request = get_model_status_pb2.GetModelStatusRequest(
            model_spec=self._model_spec(label, version))
        response = self._call(self._model_stub.GetModelStatus, request)
        state_names = get_model_status_pb2.ModelVersionStatus.State
        return [VersionState(s.version, state_names.Name(s.state), s.status.error_code,
                             s.status.error_message) for s in response.model_version_status]

    def reload_config(self, config) -> None:
        """HandleReloadConfigRequest with a ModelServerConfig (see serving/api/model_config.py)."""
        request = model_management_pb2.ReloadConfigRequest(config=config)
        self._call(self._model_stub.HandleReloadConfigRequest, request)

    # ------------------------------------------------------------------ predict
    def predict_tensors(self, images: np.ndarray, *, label: str | None = None,
                        version: int | None = None) -> PredictResult:
        """Probabilities for uint8 [N, S, S, 1] images, batched; one version answers all."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, S, S, C], got {images.dtype} "
                             f"{list(images.shape)}")
        batch = self._batch_size(images)
        parts: list[tuple[predict_pb2.PredictResponse, dict]] = []
        for start in range(0, max(len(images), 1), batch):
            response = self._predict_batch(images[start:start + batch], label, version)
            if version is None:  # pin the rest of the call to the version that answered
                label, version = None, response.model_spec.version.value
            parts.append((response, output_tensors(response)))
        return _merge(parts)

    def explain_tensors(self, images: np.ndarray, *, label: str | None = None,
                        version: int | None = None) -> ExplainResult:
        """Probabilities and Grad-CAM heat maps (the `serving_explain` signature) for uint8
        [N, S, S, 1] images; batched so each reply (4 bytes per pixel) fits the message limit,
        and pinned to one version as predict_tensors is."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, S, S, C], got {images.dtype} "
                             f"{list(images.shape)}")
        batch = self._batch_size(images, reply_bytes_per_pixel=4)
        parts: list[tuple[predict_pb2.PredictResponse, dict]] = []
        for start in range(0, max(len(images), 1), batch):
            request = self.build_request(images[start:start + batch], label=label,
                                         version=version, signature_name=SERVING_EXPLAIN)
            response = self._call(self._predict_stub.Predict, request)
            outputs = output_tensors(response)
            if HEATMAP not in outputs:
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"signature {SERVING_EXPLAIN} answered without "
                                   f"'{HEATMAP}'; it has {sorted(outputs)}")
            if version is None:
                label, version = None, response.model_spec.version.value
            parts.append((response, outputs))
        heatmaps = [from_tensor_proto(outputs[HEATMAP], name=HEATMAP) for _, outputs in parts]
        return ExplainResult(prediction=_merge(parts),
                             heatmaps=np.concatenate(heatmaps).astype(np.float32)
                             .reshape(len(images), *images.shape[1:3]))

    def build_request(self, images: np.ndarray, *, label: str | None = None,
                      version: int | None = None,
                      signature_name: str | None = None) -> predict_pb2.PredictRequest:
        """The PredictRequest for one batch (public for benchmarks and tools)."""
        request = predict_pb2.PredictRequest(model_spec=self._model_spec(label, version))
        request.model_spec.signature_name = signature_name or self.signature_name
        request.inputs[IMAGE_INPUT].CopyFrom(to_tensor_proto(images))
        return request

    def _predict_batch(self, images: np.ndarray, label: str | None,
                       version: int | None) -> predict_pb2.PredictResponse:
        request = self.build_request(images, label=label, version=version)
        return self._call(self._predict_stub.Predict, request)

    def _batch_size(self, images: np.ndarray, reply_bytes_per_pixel: int = 0) -> int:
        """Images per request so that the request (and a reply of `reply_bytes_per_pixel`
        per input pixel) stays 64 KiB under the message limit."""
        pixels = max(1, int(np.prod(images.shape[1:])))
        per_image = max(pixels * images.itemsize, pixels * reply_bytes_per_pixel)
        fits = (self.settings.max_message_bytes - (64 << 10)) // per_image
        return max(1, min(self.settings.max_batch, fits))

    def _model_spec(self, label: str | None, version: int | None) -> model_pb2.ModelSpec:
        if label is not None and version is not None:
            raise ValueError("give a version label or a version, not both")
        spec = model_pb2.ModelSpec(name=self.model_name)
        if version is not None:
            spec.version.value = int(version)
        elif label is not None:
            spec.version_label = label
        return spec

    def _call(self, method: Callable[..., _T], request) -> _T:
        """One RPC with a deadline (the channel retries UNAVAILABLE within it)."""
        try:
            return method(request, timeout=self.settings.timeout_s)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            raise ServingError(code, error.details() or "") from None


def _retry_service_config(settings: ClientSettings) -> str:
    """The channel's service config: UNAVAILABLE retried `settings.retries` times with
    exponential backoff (gRPC draws each delay uniformly below the current backoff), except
    the methods in `_NOT_RETRIED`."""
    if settings.retries == 0:
        return json.dumps({"methodConfig": []})
    policy = {"maxAttempts": settings.retries + 1,
              "initialBackoff": f"{settings.backoff_s:.3f}s",
              "maxBackoff": f"{settings.backoff_s * 2 ** (settings.retries - 1):.3f}s",
              "backoffMultiplier": 2,
              "retryableStatusCodes": ["UNAVAILABLE"]}
    return json.dumps({"methodConfig": [{"name": [{}], "retryPolicy": policy},
                                        {"name": list(_NOT_RETRIED)}]})


def channel_options(settings: ClientSettings) -> list[tuple[str, object]]:
    """The gRPC channel arguments: message limits, the retry policy, the reconnect back-off.

    The retry buffer holds a whole request: gRPC keeps a call's messages for a retry only up
    to `grpc.per_rpc_retry_buffer_size` (default 256 KiB) and commits (never retries) a call
    whose request is larger, so with the default one 512^2 uint8 image (256 KiB + framing)
    already turned the retry policy off for every Predict. The buffer holds references to the
    serialized request, which lives until the call ends anyway; its CPU cost is in
    bench/serving.py's docstring."""
    balancing = [("grpc.lb_policy_name", settings.lb_policy)] if settings.lb_policy else []
    return balancing + [("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.enable_retries", 1),
            ("grpc.per_rpc_retry_buffer_size", settings.max_message_bytes),
            ("grpc.service_config", _retry_service_config(settings)),
            ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["initial"]),
            ("grpc.min_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["min"]),
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS["max"])]


def _open_channel(target: str, tls_ca: str | None, settings: ClientSettings) -> grpc.Channel:
    options = channel_options(settings)
    if tls_ca is None:
        return grpc.insecure_channel(target, options=options)
    with open(tls_ca, "rb") as stream:
        credentials = grpc.ssl_channel_credentials(root_certificates=stream.read())
    return grpc.secure_channel(target, credentials, options=options)


def _metadata_from(response, signature_map, signature_name: str) -> ModelMetadata:
    if signature_name not in signature_map.signature_def:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"model has no signature {signature_name!r}; it has "
                          f"{sorted(signature_map.signature_def)}")
    signature = signature_map.signature_def[signature_name]
    if IMAGE_INPUT not in signature.inputs:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"signature {signature_name} has inputs {sorted(signature.inputs)}, "
                          f"expected '{IMAGE_INPUT}'")
    info = signature.inputs[IMAGE_INPUT]
    shape = shape_of(info.tensor_shape)
    if (info.dtype != types_pb2.DT_UINT8 or shape is None or len(shape) != 4
            or shape[1] != shape[2] or shape[1] < 1 or shape[3] != 1):
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"input '{IMAGE_INPUT}' is {dtype_name(info.dtype)} {shape}, expected "
                           "uint8 [None, S, S, 1]")
    return ModelMetadata(
        model_name=response.model_spec.name, model_version=response.model_spec.version.value,
        signature_name=signature_name, input_name=IMAGE_INPUT,
        input_dtype=dtype_name(info.dtype), image_size=shape[1],
        output_names=tuple(sorted(signature.outputs)),
        signature_names=tuple(sorted(signature_map.signature_def)))


def _merge(parts: list[tuple[predict_pb2.PredictResponse, dict]]) -> PredictResult:
    """One result from the replies of a request's batches, each with its `output_tensors`."""
    first = parts[0][0].model_spec
    outputs = [tensors for _, tensors in parts]
    probabilities = [from_tensor_proto(o[PROBABILITY], name=PROBABILITY) for o in outputs]
    logits = ([from_tensor_proto(o[LOGIT], name=LOGIT) for o in outputs]
              if all(LOGIT in o for o in outputs) else None)
    threshold = None
    if all(THRESHOLD_OUTPUT in o for o in outputs):
        values = np.concatenate([from_tensor_proto(o[THRESHOLD_OUTPUT],
                                                   name=THRESHOLD_OUTPUT).reshape(-1)
                                 for o in outputs])
        finite = values[np.isfinite(values)]
        threshold = float(finite[0]) if finite.size else None
    return PredictResult(
        probabilities=np.concatenate(probabilities).astype(np.float32).reshape(-1),
        logits=None if logits is None else np.concatenate(logits).astype(np.float32).reshape(-1),
        model_name=first.name, model_version=first.version.value,
        signature_name=first.signature_name, model_threshold=threshold)
