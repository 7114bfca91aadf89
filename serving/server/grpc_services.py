"""PredictionService and ModelService servicers over the ModelManager.

Each handler turns a `ServingError` into its gRPC status, and any unexpected exception into
INTERNAL (logged with its traceback): a bad request never kills the server. Replies use the
typed `*_val` fields, as TF Serving does by default (`Tensor::AsProtoField`), so clients meet
the same wire format from both servers.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import grpc

from serving.server import example_apis
from serving.api.errors import ServingError, invalid_argument
from serving.server.metrics import observe_grpc
from serving.server.model_manager import ModelManager
from serving.api.protos import (SIGNATURE_DEF_FIELD, get_model_metadata_pb2, get_model_status_pb2,
                            model_management_pb2, model_service_pb2_grpc, predict_pb2,
                            prediction_service_pb2_grpc)
from serving.api.tensor_codec import to_tensor_proto

LOG = logging.getLogger(__name__)


def _grpc_errors(handler: Callable) -> Callable:
    """Map ServingError -> its status code, anything else -> INTERNAL; log, never raise."""
    @functools.wraps(handler)
    def wrapper(self, request, context: grpc.ServicerContext):
        try:
            return handler(self, request, context)
        except ServingError as error:
            LOG.debug("%s refused: %s", handler.__name__, error)
            context.abort(error.code, error.details)
        except Exception as error:  # noqa: BLE001 - the server must outlive any request
            LOG.exception("%s failed", handler.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
    return wrapper


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, max_decoded_bytes: int):
        self._manager = manager
        self._max_decoded_bytes = max_decoded_bytes

    @_grpc_errors
    @observe_grpc("Predict")
    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        servable = self._manager.resolve(request.model_spec)
        signature_name, outputs = servable.predict(
            request.model_spec.signature_name, dict(request.inputs),
            tuple(request.output_filter), max_decoded_bytes=self._max_decoded_bytes)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.model_name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for alias, array in outputs.items():
            to_tensor_proto(array, typed_values=True, into=response.outputs[alias])
        return response

    @_grpc_errors
    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest, context
                         ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise invalid_argument(
                "GetModelMetadataRequest must specify at least one metadata_field")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = self._manager.resolve(request.model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.model_name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(servable.signature_def_map())
        return response

    @_grpc_errors
    @observe_grpc("Classify")
    def Classify(self, request, context):
        return example_apis.classify(self._manager.resolve(request.model_spec), request)

    @_grpc_errors
    @observe_grpc("Regress")
    def Regress(self, request, context):
        return example_apis.regress(self._manager.resolve(request.model_spec), request)

    @_grpc_errors
    def MultiInference(self, request, context):
        servable = self._manager.resolve(example_apis.multi_inference_model_spec(request))
        return example_apis.multi_inference(servable, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager):
        self._manager = manager

    @_grpc_errors
    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest, context
                       ) -> get_model_status_pb2.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, status in self._manager.version_statuses(request.model_spec):
            entry = response.model_version_status.add(version=version, state=status.state)
            entry.status.error_code = status.error_code.value[0]
            entry.status.error_message = status.error_message
        return response

    @_grpc_errors
    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                  context) -> model_management_pb2.ReloadConfigResponse:
        if request.config.WhichOneof("config") != "model_config_list":
            raise invalid_argument("ServerModelConfig type not supported by "
                                   "HandleReloadConfigRequest. Only ModelConfigList is "
                                   "currently supported")
        self._manager.reload_config(request.config)
        LOG.info("Reloaded config with models %s", sorted(self._manager.model_names()))
        return model_management_pb2.ReloadConfigResponse()
