"""`tensorflow_model_server` flags that mean nothing for the local server, and what it does
with them, so a TF Serving argument list still starts `mspipe serve`.

Two kinds, decided by whether a client could tell the difference:
- IGNORED: tuning with no visible effect on answers (threads, caches, warmup, profiler, GPU
  memory, XLA): accepted, with one warning naming them.
- REFUSED (unless given TF Serving's default): they change what clients see or how they
  connect (UNIX socket, SSL/ALTS, other platforms or tags, per-model batching, TF Lite):
  starting anyway would hide a difference, so `mspipe serve` stops with a usage error.
Flags the local server implements are fields of ServerSettings (serving/server/settings.py).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ForeignFlag:
    name: str                  # without the leading --
    kind: type                 # bool, int, float or str: how TF Serving parses it
    default: object            # TF Serving's default: giving it is always accepted
    refused_because: str = ""  # empty: accepted and ignored (with a warning)


IGNORED = (
    ForeignFlag("num_load_threads", int, 0),
    ForeignFlag("num_unload_threads", int, 0),
    ForeignFlag("flush_filesystem_caches", bool, True),
    ForeignFlag("enable_model_warmup", bool, True),
    ForeignFlag("num_request_iterations_for_warmup", int, 0),
    ForeignFlag("remove_unused_fields_from_bundle_metagraph", bool, True),
    ForeignFlag("enable_profiler", bool, True),
    ForeignFlag("per_process_gpu_memory_fraction", float, 0.0),
    ForeignFlag("xla_cpu_compilation_enabled", bool, False),
    ForeignFlag("xla_gpu_compilation_enabled", bool, False),
    ForeignFlag("grpc_channel_arguments", str, ""),
    ForeignFlag("enable_signature_method_name_check", bool, False),
    ForeignFlag("rest_api_enable_cors_support", bool, False),
    ForeignFlag("enable_serialization_as_tensor_content", bool, False),
    ForeignFlag("num_tflite_pools", int, 0),
    ForeignFlag("num_tflite_interpreters_per_pool", int, 1),
    ForeignFlag("mixed_precision", str, ""),
    ForeignFlag("skip_initialize_tpu", bool, False),
)

REFUSED = (
    ForeignFlag("grpc_socket_path", str, "", "gRPC is served on TCP only"),
    ForeignFlag("ssl_config_file", str, "", "use --tls-cert and --tls-key"),
    ForeignFlag("use_alts_credentials", bool, False, "ALTS is not supported"),
    ForeignFlag("platform_config_file", str, "", "only the TensorFlow platform is served"),
    ForeignFlag("tensorflow_session_config_file", str, "",
                "use --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism"),
    ForeignFlag("saved_model_tags", str, "serve", "only the `serve` tag set is loaded"),
    ForeignFlag("enable_per_model_batching_parameters", bool, False,
                "use --batching_parameters_file"),
    ForeignFlag("prefer_tflite_model", bool, False, "TF Lite models are not served"),
    ForeignFlag("thread_pool_factory_config_file", str, "", "custom thread pools are not "
                "supported"),
)

FOREIGN_FLAGS = IGNORED + REFUSED


def is_default(flag: ForeignFlag, value: object) -> bool:
    return value == flag.default
