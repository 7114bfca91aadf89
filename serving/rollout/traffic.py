"""Client-side traffic split between the `stable` and `canary` version labels.

TF Serving has no traffic weights: it answers whatever label a request names. So the split is
made here, in the client, and is sticky per study: a study's key
(components.dicom.studies.study_key: a salted hash of its StudyInstanceUID, or of the pixels of a
JPEG/PNG group) is hashed with the rollout's salt into
[0, 1), and the study goes to `canary` when that number is below the weight. All slices of a
study therefore get the same version, and a study keeps its version for the whole rollout
(raising the weight only adds studies to the canary, it never moves one back).

A canary never makes a caller's request fail: when the canary label is gone (the rollout was
promoted or rolled back since the weight was read), or the canary answers with an error or a
non-finite probability, the request is answered by `stable` and counted in `stats`.

    router = CanaryRouter.from_rollout_state(client, "models.config")
    routed = router.predict_study(images, study_key)     # routed.label, routed.result
    reports = serving.client.predict.predict_routed(client, ["study_folder/"], router)
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from serving.api.errors import ServingError
from serving.client.model_client import ModelClient, PredictResult
from serving.rollout.state import RolloutStateError, read_model_state, state_path_for

LOG = logging.getLogger(__name__)
STABLE, CANARY = "stable", "canary"


def routing_point(study_key: str, salt: str) -> float:
    """A uniform, deterministic number in [0, 1) for (salt, study key)."""
    digest = hashlib.sha256(f"{salt}\0{study_key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


@dataclass
class RouterStats:
    """Per-label request counts, and canary requests answered by stable instead."""
    requests: dict[str, int] = field(default_factory=lambda: {STABLE: 0, CANARY: 0})
    canary_fallbacks: int = 0
    last_fallback_reason: str = ""


@dataclass(frozen=True)
class RoutedPrediction:
    label: str              # the label the study was routed to
    result: PredictResult   # the answer the caller gets (from stable when fell_back)
    fell_back: bool


class _RolloutStateWatcher:
    """(weight, salt, managed) from the rollout state file, re-read only when it changes.
    `managed`: the file exists, so the model has a `stable` label to ask for."""

    def __init__(self, model_config_path: str | os.PathLike, model_name: str):
        self.path = state_path_for(model_config_path)
        self.model_name = model_name
        self._signature: tuple[int, int] | None = None
        self._value: tuple[float, str, bool] = (0.0, "", False)
        self._lock = threading.Lock()

    def __call__(self) -> tuple[float, str, bool]:
        try:
            stat = self.path.stat()
            signature = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            signature = None
        with self._lock:
            if signature != self._signature:
                self._signature = signature
                try:
                    state = read_model_state(self.path, self.model_name)
                except RolloutStateError as error:  # keep routing as before: never fail a
                    LOG.error("%s; keeping weight %.2f", error, self._value[0])  # caller
                    return self._value
                self._value = (state.weight if state.active else 0.0, state.salt,
                               signature is not None)
            return self._value


class CanaryRouter:
    """Routes whole studies to `stable` or `canary` with a sticky, salted hash split."""

    def __init__(self, client: ModelClient, weight: float = 0.0, salt: str = "", *,
                 weight_source: Callable[[], tuple[float, str, bool]] | None = None):
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be within [0, 1], got {weight}")
        self.client = client
        self._fixed = (float(weight), salt, True)
        self._source = weight_source
        self.stats = RouterStats()
        self._stats_lock = threading.Lock()

    @classmethod
    def from_rollout_state(cls, client: ModelClient,
                           model_config_path: str | os.PathLike) -> "CanaryRouter":
        """Weight and salt follow `mspipe rollout` live (the state file beside models.config).
        While there is no state file the model is not rollout-managed: requests name no
        label and the server answers with its newest version, as without a router."""
        return cls(client, weight_source=_RolloutStateWatcher(model_config_path,
                                                              client.model_name))

    def _current(self) -> tuple[float, str, bool]:
        return self._source() if self._source is not None else self._fixed

    @property
    def weight(self) -> float:
        return self._current()[0]

    @property
    def stable_label(self) -> str | None:
        """`stable` once the model is rollout-managed, else no label at all."""
        return STABLE if self._current()[2] else None

    def label_for(self, study_key: str) -> str:
        weight, salt, _ = self._current()
        return CANARY if weight > 0.0 and routing_point(study_key, salt) < weight else STABLE

    # ------------------------------------------------------------------ predictions
    def predict_study(self, images: np.ndarray, study_key: str) -> RoutedPrediction:
        """All slices of one study (uint8 [N, S, S, 1]), answered by one version."""
        label = self.label_for(study_key)
        self._count(label)
        if label == CANARY:
            try:
                result = self.client.predict_tensors(images, label=CANARY)
                if np.isfinite(result.probabilities).all():
                    return RoutedPrediction(label, result, False)
                reason = "canary returned a non-finite probability"
            except ServingError as error:
                reason = f"canary failed: {error}"
            self._note_fallback(reason)
        return RoutedPrediction(label, self.client.predict_tensors(
            images, label=self.stable_label), label == CANARY)

    def _count(self, label: str) -> None:
        with self._stats_lock:
            self.stats.requests[label] += 1

    def _note_fallback(self, reason: str) -> None:
        with self._stats_lock:
            self.stats.canary_fallbacks += 1
            self.stats.last_fallback_reason = reason
