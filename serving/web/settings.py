"""What the clinicians' web page can be told: one frozen dataclass, no heavy imports."""
from __future__ import annotations

from dataclasses import dataclass

from components.contract import DEFAULT_MODEL_NAME

MB = 1_000_000  # decimal, as file browsers show sizes


@dataclass(frozen=True)
class WebSettings:
    """Limits are sized for one brain MRI study per upload (a few hundred slices)."""

    server: str                        # gRPC address of the model server, HOST:PORT
    host: str = "127.0.0.1"            # loopback unless asked: the page has no login
    port: int = 8080                   # 0 picks a free port
    model_name: str = DEFAULT_MODEL_NAME
    label: str | None = None           # version label to ask for; None: the server's default
    model_config: str | None = None    # models.config of `mspipe rollout`: route by its canary
    known_labels: tuple[str, ...] = ("stable", "canary")  # probed to say which label answered
    # Decision threshold (p > t = MS-like). None: the answering model's own operating threshold
    # (contract.THRESHOLD_OUTPUT), contract.DECISION_THRESHOLD for models without one; a value
    # overrides it for every model (shown as set by the operator).
    threshold: float | None = None
    max_upload_bytes: int = 100 * MB   # one request: all files (or the zip) together
    max_unzipped_bytes: int = 400 * MB  # everything inside the zips of one upload
    max_files: int = 2000              # files per upload, zip members included
    max_slices: int = 1000             # scored images per upload (256 KiB each at 512^2)
    explain_batch: int = 16            # thumbnails per heat map request (~4 MB of PNG JSON)
    max_concurrent: int = 2            # uploads analysed at once; more wait, then get "busy"
    busy_wait_s: float = 30.0          # how long an upload waits for a free slot
    timeout_s: float = 60.0            # deadline of each model-server call
    tls_ca: str | None = None          # PEM CA bundle: talk TLS to the model server

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        for name in ("max_upload_bytes", "max_unzipped_bytes", "max_files", "max_slices",
                     "explain_batch", "max_concurrent"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.label is not None and self.label not in self.known_labels:
            object.__setattr__(self, "known_labels", (*self.known_labels, self.label))
