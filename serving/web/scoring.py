"""Which model version scores each study of an upload, chosen the way every client chooses it.

- An explicit `--label` wins (as `mspipe predict --label`).
- With `--model-config` (a models.config managed by `mspipe rollout`), each study goes to
  `stable` or `canary` through serving.rollout.traffic.CanaryRouter: the rollout's weight,
  sticky per study, falling back to stable when the canary fails. The routing key is the study's
  components.dicom.studies.study_key, as `mspipe predict` routes it, so the page and the CLI send
  a study to the same version.
- Otherwise the server's default version answers, pinned for the whole upload, as
  serving.client.predict.predict_paths pins it.
Whatever answered is reported with its version and the labels that point at it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from components.contract import SERVING_EXPLAIN
from serving.api.errors import ServingError
from serving.client.model_client import ModelMetadata, PredictResult
from serving.web.settings import WebSettings

if TYPE_CHECKING:
    from serving.client.model_client import ModelClient
    from serving.rollout.traffic import CanaryRouter

@dataclass(frozen=True)
class Answer:
    result: PredictResult
    routed_to: str | None   # stable | canary when the rollout chose; None otherwise
    fell_back: bool         # routed to canary, answered by stable


class Scorer:
    def __init__(self, client: "ModelClient", settings: WebSettings,
                 router: "CanaryRouter | None" = None):
        self.client = client
        self.settings = settings
        self.router = router

    @classmethod
    def for_settings(cls, client: "ModelClient", settings: WebSettings) -> "Scorer":
        router = None
        if settings.model_config is not None:
            from serving.rollout.traffic import CanaryRouter
            router = CanaryRouter.from_rollout_state(client, settings.model_config)
        return cls(client, settings, router)

    def routes(self) -> bool:
        """Route by the rollout: asked to, no explicit label, and the model is managed."""
        return (self.router is not None and self.settings.label is None
                and self.router.stable_label is not None)

    def asked_label(self) -> str | None:
        return self.router.stable_label if self.routes() else self.settings.label

    def metadata(self) -> ModelMetadata:
        """The version the page asks by default: its input size preprocesses the upload."""
        return self.client.metadata(label=self.asked_label())

    def routing(self) -> dict | None:
        return {"weight": self.router.weight} if self.routes() else None

    def score(self, images: np.ndarray, study_key: str, metadata: ModelMetadata) -> Answer:
        """All slices of one study (uint8 [N, S, S, 1]), answered by one version."""
        if self.routes():
            routed = self.router.predict_study(images, study_key)
            return Answer(routed.result, routed.label, routed.fell_back)
        return Answer(self.client.predict_tensors(images, version=metadata.model_version),
                      None, False)

    def explain_input_size(self, version: int) -> int | None:
        """That version's input size when it exports `serving_explain`, None when it does not
        (older models): one metadata call answers both."""
        metadata = self.client.metadata(version=version)
        return metadata.image_size if SERVING_EXPLAIN in metadata.signature_names else None

    def explain(self, images: np.ndarray, version: int) -> np.ndarray:
        """Grad-CAM heat maps float32 [N, S, S] from that version (the one that scored the
        study: a heat map is only meaningful next to its own probability)."""
        return self.client.explain_tensors(images, version=version).heatmaps

    def answered_by(self, answer: Answer) -> dict:
        version = answer.result.model_version
        return {"version": version, "labels": self.labels_answering(version),
                "routed_to": answer.routed_to, "fell_back": answer.fell_back}

    def labels_answering(self, version: int) -> list[str]:
        """The version labels (of those we know) that point at `version`."""
        labels = []
        for label in self.settings.known_labels:
            try:
                if self.client.metadata(label=label).model_version == version:
                    labels.append(label)
            except ServingError:  # label not configured on this server
                continue
        return labels
