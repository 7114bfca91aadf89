"""The report's "Where the model looked" examples: Grad-CAM over the top-scoring MS slices.

The candidate's `serving_explain` signature (components/trainer/explain.py) is run on the few
eval slices of MS studies that scored highest, and each is saved as a PNG of the slice with the
heat map blended over it (components/dicom/overlay.py, the web page's colouring). A reader sees
whether a high score came from the brain, and which part of it, rather than from the skull,
the background or an artefact. Models exported before the signature existed get a sentence
instead of figures. Images are the preprocessed tensors; nothing identifies the study.
"""
from __future__ import annotations

import html
import os

import numpy as np
from PIL import Image

from components import contract
from components.dicom.overlay import blend
from components.evaluation_report.report_data import SlicePredictions, _examples, _image

EXAMPLE_COUNT = 4


def top_positive_indices(slices: SlicePredictions, count: int = EXAMPLE_COUNT) -> list[int]:
    """Indices (in eval-split order) of the highest-probability slices of MS studies; ties by
    order, so the choice is deterministic."""
    positives = np.flatnonzero(slices.label == 1)
    order = sorted(positives, key=lambda i: (-slices.probability[i], i))
    return [int(i) for i in order[:count]]


def split_images(split_dir: str, indices: list[int], image_size: int) -> list[np.ndarray]:
    """The uint8 [S, S, 1] images at `indices`, read in the order predict_split read them."""
    wanted, found = set(indices), {}
    for index, (file_name, example) in enumerate(_examples(split_dir)):
        if index in wanted:
            found[index] = _image(example, image_size, file_name)
            if len(found) == len(wanted):
                break
    return [found[i] for i in indices]


def explanations_section(out_dir: str, model_dir: str, split_dir: str,
                         slices: SlicePredictions, count: int = EXAMPLE_COUNT) -> str:
    """Writes gradcam-<k>.png and returns the section's HTML."""
    import tensorflow as tf

    title = "<h2>Where the model looked</h2>"
    loaded = tf.saved_model.load(model_dir)
    if contract.SERVING_EXPLAIN not in loaded.signatures:
        return (f"{title}<p>This model exports no <code>{contract.SERVING_EXPLAIN}</code> "
                "signature (it predates it), so no heat maps are shown.</p>")
    indices = top_positive_indices(slices, count)
    if not indices:
        return f"{title}<p>The eval split holds no slice of an MS study.</p>"
    explain = loaded.signatures[contract.SERVING_EXPLAIN]
    size = int(explain.structured_input_signature[1][contract.IMAGE_INPUT].shape[1])
    images = np.stack(split_images(split_dir, indices, size))
    heatmaps = explain(**{contract.IMAGE_INPUT: tf.constant(images)})[contract.HEATMAP].numpy()
    figures = []
    for rank, (index, image, heatmap) in enumerate(zip(indices, images, heatmaps), start=1):
        name = f"gradcam-{rank}.png"
        Image.fromarray(blend(image, heatmap)).save(os.path.join(out_dir, name))
        caption = f"#{rank}: probability {slices.probability[index]:.3f} (per slice)"
        figures.append(f"<figure class='gradcam'><img src='{name}' alt='{html.escape(caption)} "
                       f"with its Grad-CAM heat map'><figcaption>{html.escape(caption)}"
                       "</figcaption></figure>")
    return (f"{title}<p>The {len(indices)} highest-scoring eval slices of MS studies, each with "
            "its Grad-CAM heat map (the served <code>serving_explain</code> signature: the "
            "gradient of the logit weighting the last convolution's channels). Red marks what "
            "raised the probability most, blue little; untinted areas did not raise it. A "
            "heat map says where the evidence was, not that it was a lesion.</p>"
            f"<div class='gradcams'>{''.join(figures)}</div>")
