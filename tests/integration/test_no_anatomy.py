"""`mspipe predict` refuses a slice with no head in it, with a reason, and answers the rest:
the one shared preprocessing decides (components.dicom.anatomy), so ingest and the web page
refuse it the same way."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
from PIL import Image

from mspipe import main as cli
from support.rollout_fixtures import FAST, initial_config
from support.serving_fixtures import brain_like_frames, running_server


def test_predict_refuses_blank_and_noise_pngs_and_answers_the_head(tmp_path, model_source):
    model_source.good(1)
    config = initial_config(tmp_path, model_source)
    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(folder / "blank.png")
    noise = np.random.default_rng(3).integers(0, 30, (96, 96)).astype(np.uint8)
    Image.fromarray(noise).save(folder / "noise.png")
    head = np.clip(brain_like_frames(1, seed=4)[0] // 8, 0, 255).astype(np.uint8)
    Image.fromarray(head).save(folder / "head.png")
    with running_server(config, **FAST) as server:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(["predict", str(folder / "blank.png"), str(folder / "noise.png"),
                             str(folder / "head.png"), "--server", server.address, "--json"])
    report = json.loads(out.getvalue())
    assert code == 0
    reasons = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in report["rejections"]}
    assert reasons == {"blank.png": "constant_image", "noise.png": "no_anatomy"}
    assert [s["path"].rsplit("/", 1)[-1] for s in report["slices"]] == ["head.png"]
