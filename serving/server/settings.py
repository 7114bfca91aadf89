"""Settings of the local model server, and the one declaration of `mspipe serve`'s options.

A light module (no gRPC, no TensorFlow), so `mspipe serve --help` and tests that only need the
defaults do not import TensorFlow. A field a user may set names its command-line flag and help
in its metadata (`flag`, `help`, and `unit` when the flag counts in larger units than the
field); mspipe/options.py derives the argparse options and builds the settings back from them,
so a new server setting is declared here and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass

from serving.api.settings import option_field

MIB = 1 << 20


@dataclass(frozen=True)
class ServerSettings:
    """Everything the local server can be told; defaults suit one machine, batched 512^2."""
    model_config: str = option_field("--model-config",
                                "models.config (TF Serving ModelServerConfig text proto)",
                                metavar="PATH")
    # Loopback unless asked: the API has no authentication.
    host: str = option_field("--host", "address to bind; 0.0.0.0 exposes the unauthenticated API "
                        "to the network", "127.0.0.1", metavar="ADDRESS")
    port: int = option_field("--port", "gRPC port; 0 picks a free one", 8500)  # TF Serving's
    # TF Serving's --file_system_poll_wait_seconds: how soon a pushed version is served.
    poll_seconds: float = option_field("--poll-seconds", "how often base paths are scanned for new "
                                  "versions", 1.0)
    config_poll_seconds: float = option_field("--config-poll-seconds", "how often models.config is "
                                         "checked for changes; 0: never", 1.0)
    # 256 uint8 images of 512^2 per request.
    max_message_bytes: int = option_field("--max-message-mib", "largest request/response in MiB",
                                     64 * MIB, unit=MIB, metavar="MIB")
    # Concurrent RPCs; TensorFlow computes outside the GIL.
    max_workers: int = option_field("--max-workers", "concurrent RPC threads", 16)
    grace_seconds: float = option_field("--grace-seconds", "how long SIGTERM (or stop()) waits for "
                                   "in-flight calls", 10.0)
    allow_version_labels_for_unavailable_models: bool = option_field(  # TF Serving's default: off
        "--allow-version-labels-for-unavailable-models",
        "as TF Serving's flag: a new label may point at a version that is not loaded yet "
        "(needed when models.config has labels at startup); moving an existing label still "
        "needs it loaded", False)
    tls_cert_file: str | None = option_field("--tls-cert", "PEM certificate chain: serve gRPC over "
                                        "TLS instead of plaintext", None, metavar="FILE")
    tls_key_file: str | None = option_field("--tls-key", "PEM private key of --tls-cert", None,
                                       metavar="FILE")

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both a certificate and its key (--tls-cert, --tls-key)")

    @property
    def max_decoded_bytes(self) -> int:
        """Largest decoded input tensor: typed values may describe more than they carry."""
        return 4 * self.max_message_bytes
