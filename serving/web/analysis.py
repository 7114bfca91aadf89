"""Uploaded files -> the model's tensors -> probabilities per slice and per study, for the page.

The same steps as `serving.client.predict` (the CLI client's): the served model's metadata
gives the input size, `components.dicom.slices` turns each file into tensors and rejections
(the loop ingest uses too, with the same reject codes), slices are grouped into studies by
`components.dicom.studies` (a study is its StudyInstanceUID; the JPEG/PNG images of an upload
fall back to one group), the study-level probability is the mean over its slices
(`components.dicom.metrics.aggregate_by_study`, as in training and evaluation), and one model
version scores each study through the thin gRPC client (serving/web/scoring.py: the server's
default, a label, or the canary rollout's choice, keyed by `study_key` as `mspipe predict`
routes it). What this adds for people: the tensors themselves come back as PNG thumbnails
(encoded from the exact uint8 array that was sent, so what you see is what the model saw), and
every rejection carries a plain-words reason. Uploads live in memory only; the result holds the
names the user gave, for the page, and `summary_for_log` gives the counts that may be logged.

Heat maps are asked for separately (`explain_thumbnails`), when the user turns them on: the
Grad-CAM of a slice (`serving_explain`) costs ~7x its probability, and was two thirds of the
wait for a result (bench/web.py). The page sends back a study's thumbnails, which are the
tensors themselves (lossless PNG), with the version that scored the study; each comes back
with that version's heat map as a translucent PNG layer (components/dicom/overlay.py colours
it). Nothing is kept on the server between the two requests.
"""
from __future__ import annotations

import base64
import io
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from components.dicom.metrics import aggregate_by_study
from components.dicom.overlay import heat_levels, heat_palette
from components.dicom.preprocessing import PreprocessedSlice, Rejection
from components.dicom.slices import NamedInput, distinct_contents, files_to_slices
from components.dicom.studies import StudyRef, group_by_study, study_key
from serving.api.errors import ServingError
from serving.client.model_client import PredictResult
from serving.web import messages
from serving.web.scoring import Scorer
from serving.web.settings import WebSettings
from serving.web.timing import PhaseTimer
from serving.web.uploads import UploadedFile, UploadError

NO_INSTANCE = 1 << 31  # sorts slices without an InstanceNumber after the numbered ones
UPLOAD = "upload"      # every uploaded file's container: the study of its JPEG/PNG images


@dataclass(frozen=True)
class KeptSlice:
    name: str
    frames_in_file: int
    slice: PreprocessedSlice
    study: StudyRef


@dataclass(frozen=True)
class RejectedItem:
    name: str
    frames_in_file: int
    rejection: Rejection


def analyze(scorer: Scorer, uploads: list[UploadedFile], settings: WebSettings,
            timer: PhaseTimer | None = None) -> dict:
    """The JSON document the page renders (see static/app.js); `timer` gets its phases."""
    phase = (timer or PhaseTimer()).phase
    with phase("model"):
        metadata = scorer.metadata()
    with phase("preprocess"):
        kept, rejected = preprocess_uploads(uploads, metadata.image_size, settings.max_slices)
    kept.sort(key=slice_order)
    groups = group_by_study(kept, lambda item: item.study)  # raw UIDs stay on the server:
    dicom_count = sum(ref.study_uid is not None for ref in groups)  # titles are 'Study 1', ...
    studies = []
    for number, (ref, members) in enumerate(groups.items(), start=1):
        images = np.stack([k.slice.image for k in members])
        key = study_key(ref, images)
        with phase("model"):
            answer = scorer.score(images, key, metadata)
            answered_by = scorer.answered_by(answer)
            explainable = scorer.explain_input_size(answer.result.model_version) is not None
        title = ("JPEG/PNG images" if ref.study_uid is None
                 else "Study" if dicom_count == 1 else f"Study {number}")
        with phase("render"):
            studies.append(study_entry(title, key, members, answer.result, answered_by,
                                       settings.threshold, explainable))
    thresholds = {(s["threshold"], s["threshold_source"]) for s in studies}
    with phase("model"):
        labels = scorer.labels_answering(metadata.model_version)
    return {
        "model": {"name": metadata.model_name, "version": metadata.model_version,
                  "labels": labels,
                  "requested_label": settings.label, "routing": scorer.routing(),
                  "image_size": metadata.image_size, "signature": metadata.signature_name},
        # one value when every study was answered with the same threshold, else None
        "threshold": next(iter(thresholds))[0] if len(thresholds) == 1 else settings.threshold,
        "files_received": len(uploads),
        "studies": studies,
        "rejections": [rejection_entry(r) for r in sorted(rejected, key=rejection_order)],
        "notices": notices(studies, rejected, len(uploads)),
        "disclaimer": messages.DISCLAIMER,
    }


def preprocess_uploads(uploads: list[UploadedFile], image_size: int, max_slices: int
                       ) -> tuple[list[KeptSlice], list[RejectedItem]]:
    kept: list[KeptSlice] = []
    rejected: list[RejectedItem] = []
    # lazy: a zip member is inflated only when its turn comes, and dropped after it
    # a file the browser read twice (under a link's name too) is scored once
    inputs = distinct_contents(NamedInput(upload.name, upload.read(), UPLOAD) for upload in uploads)
    for file in files_to_slices(inputs, image_size=image_size):
        rejected.extend(RejectedItem(file.input.name, file.frames, rejection)
                        for rejection in file.rejections)
        kept.extend(KeptSlice(file.input.name, file.frames, item, file.study)
                    for item in file.slices)
        if len(kept) > max_slices:
            raise UploadError(f"The upload holds more than {max_slices} images to score. "
                              "Upload one study at a time.", status=413)
    return kept, rejected


def slice_order(kept: KeptSlice) -> tuple:
    """Study, then series, then instance number: the order a radiologist scrolls."""
    item = kept.slice
    instance = NO_INSTANCE if item.instance_number is None else item.instance_number
    return (item.study_uid is None, item.study_uid or "", item.series_uid or "", instance,
            kept.name, item.frame_index)


def slice_entry(kept: KeptSlice, probability: float, logit: float | None) -> dict:
    item = kept.slice
    return {"name": kept.name, "frame_index": item.frame_index,
            "frames_in_file": kept.frames_in_file, "instance_number": item.instance_number,
            "orientation": item.orientation, "rows": item.rows, "cols": item.cols,
            "probability": probability, "logit": logit,
            "thumbnail": png_data_url(item.image)}


PNG_DATA_URL = "data:image/png;base64,"


def png_data_url(image: np.ndarray) -> str:
    """Lossless PNG of the uint8 [S, S, 1] tensor exactly as it went to the model."""
    return _encoded_png(Image.fromarray(np.ascontiguousarray(image[:, :, 0])))


def _encoded_png(image: Image.Image, **options) -> str:
    """`image` as a PNG data URL. zlib level 1, not Pillow's 6: still lossless, 4x less CPU
    (12 vs 50 ms per 512x512 slice, 13% more bytes); at 6 the thumbnails were the largest part
    of the wait (bench/web.py)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1, **options)
    return PNG_DATA_URL + base64.b64encode(buffer.getvalue()).decode("ascii")


def study_entry(title: str, key: str, members: list[KeptSlice],
                result: PredictResult, answered_by: dict, threshold: float | None,
                explainable: bool = False) -> dict:
    """Study-level probability = mean over its slices, as in training and evaluation; called
    MS-like above the answering model's own threshold unless the operator set one."""
    source = "operator" if threshold is not None else result.threshold_source
    threshold = result.decision_threshold if threshold is None else threshold
    logits = result.logits
    slices = [slice_entry(item, float(result.probabilities[i]),
                          None if logits is None else float(logits[i]))
              for i, item in enumerate(members)]
    (probability,) = aggregate_by_study([key] * len(slices),
                                        [s["probability"] for s in slices]).mean_probability
    return {
        "title": title, "kind": "images" if members[0].study.study_uid is None else "dicom",
        "probability": float(probability), "above_threshold": bool(probability > threshold),
        "threshold": float(threshold), "threshold_source": source,
        "answered_by": answered_by, "slice_count": len(slices),
        "explainable": explainable,  # its version has heat maps: POST /api/explain
        "file_count": len({item.name for item in members}),
        "series_count": len({item.slice.series_uid for item in members}),
        "slices": slices}


def explain_thumbnails(scorer: Scorer, document: object, settings: WebSettings,
                       timer: PhaseTimer | None = None) -> dict:
    """`{"version": N, "images": [PNG data URL, ...]}` (up to `explain_batch` of a study's
    thumbnails as the page got them) -> `{"heatmaps": [PNG data URL, ...]}`, version N's
    Grad-CAM of each, in order.
    A malformed document or image is an UploadError naming the item and the reason. `timer`
    gets the phases: preprocess (thumbnails decoded), model, render (heat map layers)."""
    phase = (timer or PhaseTimer()).phase
    if not isinstance(document, dict):
        raise UploadError("The heat map request is not a JSON object.")
    version, thumbnails = document.get("version"), document.get("images")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UploadError('The heat map request needs "version", a positive integer.')
    if not isinstance(thumbnails, list) or not thumbnails:
        raise UploadError('The heat map request needs "images", a non-empty list.')
    if len(thumbnails) > settings.explain_batch:
        raise UploadError(f"At most {settings.explain_batch} images per heat map request, got "
                          f"{len(thumbnails)}.", status=413)
    try:
        with phase("model"):
            size = scorer.explain_input_size(version)
    except ServingError as error:
        if error.code.name != "NOT_FOUND":
            raise
        raise UploadError(f"Model version {version} is no longer served; analyse the study "
                          "again for heat maps.", status=409) from None
    if size is None:
        raise UploadError(f"Model version {version} has no heat maps (it exports no "
                          "serving_explain signature).", status=409)
    with phase("preprocess"):
        images = np.stack([thumbnail_tensor(item, index, size)
                           for index, item in enumerate(thumbnails)])
    with phase("model"):
        heatmaps = scorer.explain(images, version)
    with phase("render"):
        layers = [heat_layer_data_url(heatmap) for heatmap in heatmaps]
    return {"version": version, "heatmaps": layers}


def heat_layer_data_url(heatmap: np.ndarray) -> str:
    """The translucent heat map layer as a palette PNG with per-entry opacity (tRNS): decoded,
    exactly heat_rgba(heatmap); a quarter of an RGBA PNG's bytes to compress and send (30
    layers at 512x512: 1.6 s of the server's time as RGBA)."""
    image = Image.fromarray(heat_levels(heatmap), mode="P")
    palette = heat_palette()
    image.putpalette(palette[:, :3].tobytes())
    return _encoded_png(image, transparency=palette[:, 3].tobytes())


def thumbnail_tensor(item: object, index: int, size: int) -> np.ndarray:
    """The uint8 [S, S, 1] tensor of a thumbnail from `png_data_url` (lossless: the exact
    array the model scored); anything else is refused, naming the image by its position."""
    where = f"Image {index + 1} of the heat map request"
    if not isinstance(item, str) or not item.startswith(PNG_DATA_URL):
        raise UploadError(f"{where} is not a PNG data URL.")
    try:
        data = base64.b64decode(item[len(PNG_DATA_URL):], validate=True)
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            if image.mode != "L" or image.size != (size, size):
                raise UploadError(f"{where} is {image.mode} {image.size[0]}x{image.size[1]}; "
                                  f"the model's thumbnails are 8-bit grey {size}x{size}.")
            pixels = np.asarray(image, dtype=np.uint8)
    except UploadError:
        raise
    except (ValueError, OSError, Image.DecompressionBombError) as error:  # binascii: ValueError
        raise UploadError(f"{where} is not a readable PNG ({type(error).__name__}).") from None
    return pixels[:, :, None]


def rejection_order(item: RejectedItem) -> tuple:
    """Grouped by reason, so the page can show each reason once for all its files."""
    frame = -1 if item.rejection.frame_index is None else item.rejection.frame_index
    return (item.rejection.reason, item.name, frame)


def rejection_entry(item: RejectedItem) -> dict:
    rejection = item.rejection
    return {"name": item.name, "frame_index": rejection.frame_index,
            "frames_in_file": item.frames_in_file,
            "reason": rejection.reason, "message": messages.plain_reason(rejection.reason),
            "detail": rejection.detail}


def notices(studies: list[dict], rejected: list[RejectedItem], file_count: int) -> list[str]:
    found = []
    if not studies:
        found.append(messages.nothing_scored_notice(file_count))
        if rejected and all(r.rejection.reason == "non_axial" for r in rejected):
            found.append(messages.ONLY_NON_AXIAL_NOTICE)
    dicom_studies = sum(study["kind"] == "dicom" for study in studies)
    if dicom_studies > 1:
        found.append(messages.several_studies_notice(dicom_studies))
    if any(study["kind"] == "images" for study in studies):
        found.append(messages.IMAGES_NOTICE)
    return found


def summary_for_log(result: dict, seconds: float) -> str:
    """Counts and codes only: no names, no UIDs, no probabilities tied to a person."""
    reasons = Counter(r["reason"] for r in result["rejections"])
    slices = sum(study["slice_count"] for study in result["studies"])
    answers = Counter((study["answered_by"]["version"], study["answered_by"]["routed_to"])
                      for study in result["studies"])
    versions = ", ".join(f"version {version}" + (f" ({label})" if label else "")
                         + (f" x{count}" if count > 1 else "")
                         for (version, label), count in sorted(answers.items(), key=str))
    return (f"predict: {result['files_received']} files, {slices} slices scored in "
            f"{len(result['studies'])} group(s), {len(result['rejections'])} rejected "
            f"{dict(sorted(reasons.items()))}, model {result['model']['name']} "
            f"{versions or 'not called'}, {seconds:.2f} s")
