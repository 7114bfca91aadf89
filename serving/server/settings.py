"""Settings of the local model server, and the one declaration of `mspipe serve`'s options.

`mspipe serve` takes `tensorflow_model_server`'s (TF Serving 2.16) flags, with the same
spellings, defaults and meanings, so the argument list of serving/deploy/ starts either server;
our older spellings stay as aliases. A light module (no gRPC, no TensorFlow), so `mspipe serve
--help` and tests that only need the defaults do not import TensorFlow. A field a user may set
names its flag (and aliases) and help in its metadata (`unit` when the flag counts in larger
units than the field); mspipe/options.py derives the argparse options and builds the settings
back from them, so a server setting is declared here and nowhere else. TF Serving flags that
mean nothing here are listed in serving/server/tf_serving_flags.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from serving.api.settings import option_field

MIB = 1 << 20
INT32_MAX = (1 << 31) - 1  # TF Serving's gRPC message limit (SetMaxMessageSize(kint32max))


def _schedulable_cpus() -> int:
    """TF Serving's port::NumSchedulableCPUs(): the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


FOUR_THREADS_PER_CPU = 4 * _schedulable_cpus()  # TF Serving's default for gRPC and REST threads


@dataclass(frozen=True)
class ServerSettings:
    """Everything the local server can be told; defaults are TF Serving's unless noted."""
    model_config: str | None = option_field(
        "--model_config_file", "ModelServerConfig text proto (models.config) to serve; "
        "--model_name/--model_base_path are ignored when given", None, metavar="PATH",
        type=str, aliases=("--model-config",))
    # Loopback unless asked (TF Serving binds all interfaces): the API has no authentication.
    host: str = option_field("--host", "address to bind; 0.0.0.0 exposes the unauthenticated API "
                             "to the network", "127.0.0.1", metavar="ADDRESS")
    port: int = option_field("--port", "gRPC port; 0 picks a free one", 8500)
    rest_api_port: int = option_field(
        "--rest_api_port", "HTTP/REST (and metrics) port; 0: no REST API; must differ from "
        "--port", 0)
    rest_api_num_threads: int = option_field(
        "--rest_api_num_threads", "threads serving HTTP/REST requests", FOUR_THREADS_PER_CPU)
    rest_api_timeout_in_ms: int = option_field(
        "--rest_api_timeout_in_ms", "timeout of a HTTP/REST call", 30_000, metavar="MS")
    # How soon a pushed version is served; 0: scanned once at start (as TF Serving).
    poll_seconds: float = option_field(
        "--file_system_poll_wait_seconds", "seconds between scans of the base paths for new "
        "versions; 0: only at start", 1.0, metavar="SECONDS", aliases=("--poll-seconds",))
    # TF Serving's default 0: models.config is read once; `mspipe rollout` sends
    # HandleReloadConfigRequest, so polling is only needed when the file is edited by hand.
    config_poll_seconds: float = option_field(
        "--model_config_file_poll_wait_seconds", "seconds between re-reads of "
        "--model_config_file; 0: read once at start", 0.0, metavar="SECONDS",
        aliases=("--config-poll-seconds",))
    enable_batching: bool = option_field(
        "--enable_batching", "merge concurrent requests into one model call and refuse those "
        "over max_batch_size, as TF Serving (--batching_parameters_file)", False)
    batching_parameters_file: str | None = option_field(
        "--batching_parameters_file", "BatchingParameters text proto (with --enable_batching)",
        None, metavar="PATH", type=str)
    monitoring_config_file: str | None = option_field(
        "--monitoring_config_file", "MonitoringConfig text proto: Prometheus metrics on the "
        "REST port", None, metavar="PATH", type=str)
    allow_version_labels_for_unavailable_models: bool = option_field(
        "--allow_version_labels_for_unavailable_models",
        "a new label may point at a version that is not loaded yet (needed when models.config "
        "has labels at startup); moving an existing label still needs it loaded", False,
        aliases=("--allow-version-labels-for-unavailable-models",))
    enable_grpc_healthcheck_service: bool = option_field(
        "--enable_grpc_healthcheck_service", "serve grpc.health.v1.Health", False)
    max_num_load_retries: int = option_field(
        "--max_num_load_retries", "retries of a failed model load; 0: load once", 5)
    load_retry_interval_micros: int = option_field(
        "--load_retry_interval_micros", "wait between load retries; negative: no wait",
        60_000_000, metavar="MICROS")
    # Concurrent RPCs; TensorFlow computes outside the GIL.
    max_workers: int = option_field("--grpc_max_threads", "threads handling gRPC calls",
                                    FOUR_THREADS_PER_CPU, aliases=("--max-workers",))
    tensorflow_session_parallelism: int = option_field(
        "--tensorflow_session_parallelism", "threads for both TensorFlow thread pools unless "
        "the next two say; 0: TensorFlow's default", 0)
    tensorflow_intra_op_parallelism: int = option_field(
        "--tensorflow_intra_op_parallelism", "threads within one op; 0: TensorFlow's default", 0)
    tensorflow_inter_op_parallelism: int = option_field(
        "--tensorflow_inter_op_parallelism", "ops run at once; 0: TensorFlow's default", 0)
    # Single-model mode, as TF Serving: the config is built in memory.
    model_name: str = option_field("--model_name", "model name without --model_config_file",
                                   "default")
    model_base_path: str | None = option_field(
        "--model_base_path", "base path (versions 1/, 2/, ...) without --model_config_file",
        None, metavar="PATH", type=str)
    # Our extension; TF Serving accepts up to INT32_MAX.
    max_message_bytes: int = option_field("--max-message-mib", "largest request/response in MiB",
                                          INT32_MAX, unit=MIB, metavar="MIB")
    grace_seconds: float = option_field("--grace-seconds", "how long SIGTERM (or stop()) waits for "
                                        "in-flight calls", 10.0)
    tls_cert_file: str | None = option_field("--tls-cert", "PEM certificate chain: serve gRPC over "
                                             "TLS instead of plaintext", None, metavar="FILE")
    tls_key_file: str | None = option_field("--tls-key", "PEM private key of --tls-cert", None,
                                            metavar="FILE")

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both a certificate and its key (--tls-cert, --tls-key)")
        if not self.model_config and not self.model_base_path:
            raise ValueError("give --model_config_file (or --model_base_path for one model)")
        if self.rest_api_port and self.rest_api_port == self.port:
            raise ValueError("--rest_api_port cannot be same as --port")
        if not 0 < self.max_message_bytes <= INT32_MAX:
            raise ValueError(f"--max-message-mib must be more than 0 and at most "
                             f"{INT32_MAX // MIB}")
        if self.max_workers < 1:
            raise ValueError("--grpc_max_threads must be at least 1")

    @property
    def max_decoded_bytes(self) -> int:
        """Largest decoded input tensor: typed values may describe more than they carry."""
        return 4 * self.max_message_bytes

    @property
    def intra_op_threads(self) -> int:
        """TF Serving's rule: the specific flag, else --tensorflow_session_parallelism."""
        return self.tensorflow_intra_op_parallelism or self.tensorflow_session_parallelism

    @property
    def inter_op_threads(self) -> int:
        return self.tensorflow_inter_op_parallelism or self.tensorflow_session_parallelism
