"""Settings of the local model server: a light module, so `mspipe serve --help` and tests
that only need the defaults do not import TensorFlow."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSettings:
    """Everything the local server can be told; defaults suit one machine, batched 512^2."""
    model_config: str
    host: str = "127.0.0.1"         # loopback unless asked: the API has no authentication
    port: int = 8500                # TF Serving's gRPC port
    poll_seconds: float = 1.0       # --file_system_poll_wait_seconds: new versions on disk
    config_poll_seconds: float = 1.0  # models.config re-read period (0 = never)
    max_message_bytes: int = 64 << 20  # 256 uint8 images of 512^2 per request
    max_workers: int = 16           # concurrent RPCs; TF computes outside the GIL
    grace_seconds: float = 10.0     # drain in-flight calls on SIGTERM / stop()
    allow_version_labels_for_unavailable_models: bool = False  # TF Serving's default
    tls_cert_file: str | None = None  # PEM certificate chain: serve TLS instead of plaintext
    tls_key_file: str | None = None   # PEM private key of that certificate

    def __post_init__(self) -> None:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS needs both tls_cert_file and tls_key_file")

    @property
    def max_decoded_bytes(self) -> int:
        """Largest decoded input tensor: typed values may describe more than they carry."""
        return 4 * self.max_message_bytes
