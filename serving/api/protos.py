"""The TF Serving gRPC protos, importable without starting TensorFlow.

`tensorflow_serving.apis` is generated code that imports `tensorflow.core.framework.*_pb2`
(TensorProto, SignatureDef, ...). Those modules are plain protobuf, but importing them runs
`tensorflow/__init__.py`, which loads the whole runtime: ~10 s and ~4,500 modules for a client
that only needs to build a TensorProto. So while the protos are imported, `tensorflow` is a bare
package placeholder pointing at the installed TensorFlow folder; the placeholder is removed
afterwards, and a later `import tensorflow` (the server, or a user script calling
`tf.make_tensor_proto`) runs the real `__init__` and finds the very same proto classes already
registered, so messages are interchangeable with TensorFlow's own.

Everything in serving/ imports the protos from here, never from `tensorflow_serving` directly.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types

_IMPORT_LOCK = threading.Lock()


def _import_without_tensorflow_runtime(module_names: list[str]) -> list[types.ModuleType]:
    """Import proto modules; run TensorFlow's package __init__ only if it already ran."""
    with _IMPORT_LOCK:
        if "tensorflow" in sys.modules:
            return [importlib.import_module(name) for name in module_names]
        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the TF Serving protos need the tensorflow package installed "
                              "(its core/framework protos); it was not found")
        placeholder = types.ModuleType("tensorflow")
        placeholder.__path__ = list(spec.submodule_search_locations)
        sys.modules["tensorflow"] = placeholder
        try:
            return [importlib.import_module(name) for name in module_names]
        finally:
            if sys.modules.get("tensorflow") is placeholder:
                del sys.modules["tensorflow"]


(
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
    status_pb2,
    model_server_config_pb2,
    file_system_storage_path_source_pb2,
    example_pb2,
    feature_pb2,
    meta_graph_pb2,
    saved_model_pb2,
    tensor_pb2,
    tensor_shape_pb2,
    types_pb2,
) = _import_without_tensorflow_runtime([
    "tensorflow_serving.apis.classification_pb2",
    "tensorflow_serving.apis.get_model_metadata_pb2",
    "tensorflow_serving.apis.get_model_status_pb2",
    "tensorflow_serving.apis.input_pb2",
    "tensorflow_serving.apis.model_management_pb2",
    "tensorflow_serving.apis.model_pb2",
    "tensorflow_serving.apis.model_service_pb2_grpc",
    "tensorflow_serving.apis.predict_pb2",
    "tensorflow_serving.apis.prediction_service_pb2_grpc",
    "tensorflow_serving.apis.regression_pb2",
    "tensorflow_serving.apis.status_pb2",
    "tensorflow_serving.config.model_server_config_pb2",
    "tensorflow_serving.config.file_system_storage_path_source_pb2",
    "tensorflow.core.example.example_pb2",
    "tensorflow.core.example.feature_pb2",
    "tensorflow.core.protobuf.meta_graph_pb2",
    "tensorflow.core.protobuf.saved_model_pb2",
    "tensorflow.core.framework.tensor_pb2",
    "tensorflow.core.framework.tensor_shape_pb2",
    "tensorflow.core.framework.types_pb2",
])

ModelVersionState = get_model_status_pb2.ModelVersionStatus.State
SIGNATURE_DEF_FIELD = "signature_def"  # the only GetModelMetadata field TF Serving knows
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


def _batching_parameters_class() -> type:
    """TF Serving's BatchingParameters (servables/tensorflow/session_bundle_config.proto), the
    message of --batching_parameters_file. The pip package `tensorflow-serving-api` does not
    ship it, so it is declared here, in a private pool, with the same field names and types:
    the file is a text proto, which is read by field name."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    wrapper = {"Int64": ".google.protobuf.Int64Value", "Bool": ".google.protobuf.BoolValue",
               "String": ".google.protobuf.StringValue"}
    fields = [("max_batch_size", "Int64"), ("batch_timeout_micros", "Int64"),
              ("max_enqueued_batches", "Int64"), ("num_batch_threads", "Int64"),
              ("thread_pool_name", "String"), ("allowed_batch_sizes", "repeated int64"),
              ("pad_variable_length_inputs", "bool"), ("enable_large_batch_splitting", "Bool"),
              ("max_execution_batch_size", "Int64")]
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(
        wrappers_pb2.DESCRIPTOR.serialized_pb))
    file = descriptor_pb2.FileDescriptorProto(
        name="mspipe/batching_parameters.proto", package="tensorflow.serving", syntax="proto3",
        dependency=[wrappers_pb2.DESCRIPTOR.name])
    message = file.message_type.add(name="BatchingParameters")
    field_type = descriptor_pb2.FieldDescriptorProto
    for number, (name, kind) in enumerate(fields, start=1):
        field = message.field.add(name=name, number=number, label=field_type.LABEL_OPTIONAL)
        if kind in wrapper:
            field.type, field.type_name = field_type.TYPE_MESSAGE, wrapper[kind]
        elif kind == "bool":
            field.type = field_type.TYPE_BOOL
        else:
            field.type, field.label = field_type.TYPE_INT64, field_type.LABEL_REPEATED
    pool.Add(file)
    return message_factory.MessageFactory(pool).GetPrototype(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


BatchingParameters = _batching_parameters_class()


def _monitoring_config_class() -> type:
    """TF Serving's MonitoringConfig (config/monitoring_config.proto), the message of
    --monitoring_config_file. Not shipped by `tensorflow-serving-api` either, so declared here
    in a private pool with its field names, numbers and types (read as a text proto):
    `prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }`."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field_type = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="mspipe/monitoring_config.proto", package="tensorflow.serving", syntax="proto3")
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field_type.TYPE_BOOL,
                         label=field_type.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field_type.TYPE_STRING,
                         label=field_type.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=field_type.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig",
                         label=field_type.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.MessageFactory(pool).GetPrototype(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


MonitoringConfig = _monitoring_config_class()
