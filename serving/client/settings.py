"""Settings of the thin gRPC client: a light module (no gRPC, no numpy), so `mspipe predict
--help` and the web page's option parsing read the defaults without loading the client."""
from __future__ import annotations

from dataclasses import dataclass

MAX_RETRIES = 4  # gRPC silently caps maxAttempts at 5


@dataclass(frozen=True)
class ClientSettings:
    timeout_s: float = 30.0          # deadline of each RPC, retries included
    retries: int = 3                 # extra attempts on UNAVAILABLE (gRPC allows at most 4)
    backoff_s: float = 0.2           # first retry delay; doubles, with jitter
    max_batch: int = 32              # images per Predict request
    max_message_bytes: int = 64 << 20
    # gRPC load balancing over the addresses of one target (`ipv4:a:p,b:p`, a DNS name with
    # several A records): None keeps gRPC's pick_first (one replica, the next on failure);
    # "round_robin" spreads calls over every replica (a fleet behind a headless Service).
    lb_policy: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.retries <= MAX_RETRIES:
            raise ValueError(f"retries must be 0..{MAX_RETRIES} (gRPC caps a call at "
                             f"{MAX_RETRIES + 1} attempts), got {self.retries}")
        if self.backoff_s <= 0:
            raise ValueError(f"backoff_s must be positive, got {self.backoff_s}")
