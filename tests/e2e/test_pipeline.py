"""The whole TFX pipeline on synthetic data: splits, blessing, push, report, honesty."""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from collections import defaultdict

import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.dicom.records import decode_example, read_tfrecords, tfrecord_files

pytestmark = pytest.mark.slow


def read_split(examples_uri: str, split: str) -> list[dict]:
    split_dir = os.path.join(examples_uri, f"Split-{split}")
    assert glob.glob(os.path.join(split_dir, "*.gz")), f"no TFRecords in split {split}"
    return [decode_example(record) for path in tfrecord_files(split_dir)
            for record in read_tfrecords(path)]


def feature(example: dict, name: str):
    return example[name][0]


def study_auc(labels: list[int], scores: list[float]) -> float:
    """Mann-Whitney AUC with ties counted half: an independent check of the Evaluator's metric."""
    positives = [s for s, y in zip(scores, labels) if y == 1]
    negatives = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def pushed_model_study_auc(run) -> tuple[float, np.ndarray]:
    """Study-level AUC (mean slice probability per study) of the pushed model on the eval split."""
    model = tf.saved_model.load(run.summary.pushed_path)
    serve = model.signatures["serving_default"]
    size = run.config.image_size
    examples = read_split(run.summary.examples_uri, "eval")
    images = np.stack([np.frombuffer(feature(e, features.IMAGE), np.uint8).reshape(size, size, 1)
                       for e in examples])
    probabilities = serve(image=tf.constant(images))["probability"].numpy()
    by_study: dict[bytes, list[float]] = defaultdict(list)
    label_of: dict[bytes, int] = {}
    for example, probability in zip(examples, probabilities):
        study = feature(example, features.STUDY_ID)
        by_study[study].append(float(probability))
        label_of[study] = int(feature(example, features.LABEL))
    studies = sorted(by_study)
    auc = study_auc([label_of[s] for s in studies], [float(np.mean(by_study[s])) for s in studies])
    return auc, probabilities


def test_run_blesses_and_pushes_version_1(trained_pipeline):
    summary = trained_pipeline.summary
    assert summary.blessed is True
    assert summary.pushed_version == 1
    assert summary.pushed_path == os.path.join(trained_pipeline.config.model_base_path, "1")
    assert os.path.isfile(os.path.join(summary.pushed_path, "saved_model.pb"))
    # Only whole versions are visible: no staging folders left behind (a session fixture may
    # have retrained and pushed version 2 into the same base path by now).
    published = sorted(os.listdir(trained_pipeline.config.model_base_path))
    assert "1" in published and all(name.isdigit() for name in published), published


def first_run_evaluation(run) -> str:
    """The trained_pipeline run's own Evaluator output: the lowest execution id (a session
    fixture may have retrained into the same pipeline root since)."""
    folders = glob.glob(os.path.join(run.config.pipeline_root, "Evaluator", "evaluation", "*"))
    return min(folders, key=lambda folder: int(os.path.basename(folder)))


def test_every_study_in_exactly_one_split(trained_pipeline):
    split_of: dict[bytes, str] = {}
    for split in ("train", "eval"):
        for example in read_split(trained_pipeline.summary.examples_uri, split):
            study = feature(example, features.STUDY_ID)
            assert split_of.setdefault(study, split) == split, "a study is in two splits"
    assert set(split_of.values()) == {"train", "eval"}
    expected = {features.hash_uid(uid, features.resolve_salt(trained_pipeline.config.salt))
                for uid, record in trained_pipeline.manifest.studies.items() if record.axial_slices}
    assert {s.decode() for s in split_of} == expected


def test_secret_salt_stays_out_of_metadata_and_artifacts(trained_pipeline, pipeline_salt):
    assert trained_pipeline.config.salt.startswith("env:")
    secret = pipeline_salt.encode()
    with open(trained_pipeline.config.metadata_path, "rb") as handle:
        assert secret not in handle.read()
    for path in glob.glob(os.path.join(trained_pipeline.config.pipeline_root, "**", "*"),
                          recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                assert secret not in handle.read(), os.path.relpath(path, trained_pipeline.config.pipeline_root)


def test_study_level_auc_on_held_out_split_is_high(trained_pipeline):
    auc, probabilities = pushed_model_study_auc(trained_pipeline)
    assert auc >= 0.95, f"study-level AUC {auc:.3f} on the held-out split"
    assert np.all((probabilities >= 0) & (probabilities <= 1))


def test_grad_cam_peak_falls_in_a_lesion(trained_pipeline):
    """The pointing game on the pushed model's serving_explain signature against the
    generator's lesion masks (kept outside the DICOMs): the heat map's peak lies on a lesion
    in >= 80 % of the MS slices that show one, far above a point drawn at random in the head."""
    from components.evaluation.pointing_game import pointing_game
    from support.lesions import chance_of_pointing, positive_lesion_slices

    size = trained_pipeline.config.image_size
    images, masks, held_out = positive_lesion_slices(trained_pipeline)
    explain = tf.saved_model.load(trained_pipeline.summary.pushed_path).signatures[
        "serving_explain"]
    heatmaps = np.concatenate([explain(image=tf.constant(images[k:k + 64]))["heatmap"].numpy()
                               for k in range(0, len(images), 64)])[..., 0]
    score = pointing_game(heatmaps, masks)
    held = np.asarray(held_out)
    on_eval = pointing_game(heatmaps[held], masks[held])
    chance = chance_of_pointing(images, masks)
    print(f"\n{score.describe(size)}; eval studies only: {on_eval.describe(size)}; "
          f"chance (random point in the head) {chance:.1%}")
    assert on_eval.scored >= 20
    assert score.score >= 0.8, score.describe(size)
    assert on_eval.score >= 0.8, on_eval.describe(size)
    assert chance < 0.25  # the game is not won by pointing anywhere


def test_web_page_overlays_the_trained_models_heat_maps(trained_pipeline, tmp_path):
    """The page on the pipeline's pushed (learned) model: an MS study with its heat maps
    toggled on, saved as test-artifacts/web-heatmap-trained.png for a person to look at."""
    from pathlib import Path

    from serving.api.model_config import build_model_config, model_entry, write_model_config
    from serving.web.app import start_web
    from support.browser import full_page_screenshot, headless_chromium, wait_for
    from support.serving_fixtures import running_server
    from support.web_fixtures import upload_in_page

    run = trained_pipeline
    study_uid = next(uid for uid, record in sorted(run.manifest.studies.items())
                     if record.label == 1 and record.axial_slices)
    (folder,) = glob.glob(os.path.join(run.config.data_dir, "*", study_uid))
    files = sorted(path for path in Path(folder).rglob("*") if path.is_file())
    artifacts = Path(__file__).resolve().parents[2] / "test-artifacts"
    config_path = tmp_path / "models.config"
    write_model_config(config_path, build_model_config(
        [model_entry(run.config.model_name, run.config.model_base_path, versions=[1])]))
    with running_server(config_path) as server, \
            start_web(server.address, port=0) as web, headless_chromium() as chrome:
        upload_in_page(chrome, web, files)
        chrome.execute_script("document.getElementById('show-heatmaps').click()")
        shown = wait_for(chrome, "const layers = [...document.querySelectorAll("
                         "'figure.slice img.heatmap')]; return layers.length && layers.every("
                         "l => getComputedStyle(l).display !== 'none' && l.naturalWidth) && "
                         "layers.length;")
        assert shown == run.manifest.studies[study_uid].axial_slices
        full_page_screenshot(chrome, artifacts / "web-heatmap-trained.png")


def test_evaluator_study_auc_matches_independent_computation(trained_pipeline):
    import tensorflow_model_analysis as tfma

    evaluation_dir = first_run_evaluation(trained_pipeline)
    metrics = tfma.load_metrics(evaluation_dir)
    overall = [m for m in metrics if not m.slice_key.single_slice_keys][0]
    values = {key.name: value for key_value in overall.metric_keys_and_values
              for key, value in [(key_value.key, key_value.value)]
              if not key_value.key.is_diff}
    auc, _ = pushed_model_study_auc(trained_pipeline)
    assert values["study_auc"].double_value.value == pytest.approx(auc, abs=1e-6)


def test_report_says_what_happened(trained_pipeline):
    report = trained_pipeline.summary.report_path
    text = re.sub(r"<[^>]+>", "", open(report, encoding="utf-8").read())
    assert "BLESSED: the Evaluator accepted this model" in text
    assert "Pushed as ms_mri version 1" in text
    assert "per study" in text and "per slice" in text
    for image in ("roc.png", "confusion.png", "calibration.png"):
        assert os.path.getsize(os.path.join(os.path.dirname(report), image)) > 1000
    # the top-scoring MS eval slices with their Grad-CAM overlay (serving_explain)
    assert "Where the model looked" in text and "highest-scoring eval slices of MS" in text
    examples = sorted(re.findall(r"src='(gradcam-\d+\.png)'", open(report).read()))
    assert examples and examples == [f"gradcam-{k}.png" for k in range(1, len(examples) + 1)]
    for image in examples:
        with open(os.path.join(os.path.dirname(report), image), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_chosen_threshold_travels_with_the_model_and_is_reported_with_intervals(
        trained_pipeline):
    """The Trainer chose the threshold on held-out train studies (Youden); the pushed model
    returns it, the Evaluator scored it with intervals, and the report says all of it."""
    summary = trained_pipeline.summary
    with open(os.path.join(summary.pushed_path, "assets.extra", "threshold.json")) as handle:
        record = json.load(handle)
    assert record["rule"] == "youden" and record["validation"]["positive_studies"] >= 1
    size = trained_pipeline.config.image_size
    outputs = tf.saved_model.load(summary.pushed_path).signatures["serving_default"](
        image=tf.zeros([2, size, size, 1], tf.uint8))
    threshold = float(outputs["decision_threshold"].numpy()[0])
    assert threshold == pytest.approx(record["threshold"]) and 0.0 < threshold < 1.0

    import tensorflow_model_analysis as tfma
    evaluation_dir = first_run_evaluation(trained_pipeline)
    overall = [m for m in tfma.load_metrics(evaluation_dir) if not m.slice_key.single_slice_keys][0]
    values = {kv.key.name: kv.value.double_value.value for kv in overall.metric_keys_and_values
              if not kv.key.is_diff}
    assert values["study_threshold"] == pytest.approx(threshold)
    assert values["study_auc_ci_low"] <= values["study_auc"] <= values["study_auc_ci_high"]
    for name in ("sensitivity", "specificity"):
        assert values[f"study_{name}_ci_low"] <= values[f"study_{name}"] \
            <= values[f"study_{name}_ci_high"]

    report = summary.report_path
    with open(os.path.join(os.path.dirname(report), "study_metrics.json")) as handle:
        reported = json.load(handle)
    assert reported["threshold_source"] == "model"
    assert reported["threshold"] == pytest.approx(threshold)
    assert reported["auc"]["estimate"] == pytest.approx(values["study_auc"])
    assert reported["sensitivity"]["low"] == pytest.approx(values["study_sensitivity_ci_low"])
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", open(report, encoding="utf-8").read()))
    assert f"{threshold:.3f}, the model's own operating threshold, chosen by the Youden point" \
        in text
    assert "never on these eval studies" in text
    # the report applies the stated rule to this eval split (24 studies: 12 of each class)
    from components.dicom.metrics import MAX_CONCLUSIVE_AUC_WIDTH, MIN_STUDIES_PER_CLASS
    too_small = (min(reported["positives"], reported["negatives"]) < MIN_STUDIES_PER_CLASS
                 or reported["auc"]["high"] - reported["auc"]["low"] > MAX_CONCLUSIVE_AUC_WIDTH)
    assert ("The eval split is too small to conclude" in text) == too_small


def evaluator_inputs(metadata_path: str) -> dict[str, list[str]]:
    """URIs of the artifacts the newest run's Evaluator read, by input key, from ML Metadata."""
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = mlmd.MetadataStore(connection)
    newest = max(store.get_contexts_by_type("pipeline_run"),
                 key=lambda context: (context.create_time_since_epoch, context.id))
    type_names = {t.id: t.name for t in store.get_execution_types()}
    evaluators = [e.id for e in store.get_executions_by_context(newest.id)
                  if type_names[e.type_id].endswith("Evaluator")]
    assert len(evaluators) == 1, f"{len(evaluators)} Evaluator executions in the newest run"
    inputs: dict[str, list[str]] = defaultdict(list)
    for event in store.get_events_by_execution_ids(evaluators):
        if event.type == metadata_store_pb2.Event.INPUT:
            [artifact] = store.get_artifacts_by_id([event.artifact_id])
            inputs[event.path.steps[0].key].append(artifact.uri)
    return dict(inputs)


def evaluation_dirs(run) -> list[str]:
    """The Evaluator's outputs in this output folder, oldest run first."""
    return sorted(glob.glob(os.path.join(run.config.pipeline_root, "Evaluator", "evaluation",
                                         "*")), key=lambda path: int(os.path.basename(path)))


def overall_study_auc(evaluation_dir: str) -> dict[tuple[str, bool], float]:
    """study_auc over the whole eval split, by (model name, is a candidate-baseline diff)."""
    import tensorflow_model_analysis as tfma

    metrics = tfma.load_metrics(evaluation_dir)
    overall = [m for m in metrics if not m.slice_key.single_slice_keys][0]
    return {(kv.key.model_name, kv.key.is_diff): kv.value.double_value.value
            for kv in overall.metric_keys_and_values if kv.key.name == "study_auc"}


def test_retrained_model_is_judged_against_last_blessed(trained_pipeline, retrained_pipeline):
    """Run 2's Evaluator read run 1's blessed model (pushed as version 1) as its baseline,
    scored both on the same eval split, and blessed exactly when the numbers pass both bars."""
    import tensorflow_model_analysis as tfma

    config, summary = retrained_pipeline.config, retrained_pipeline.summary
    assert trained_pipeline.summary.pushed_version == 1
    inputs = evaluator_inputs(config.metadata_path)
    assert inputs["baseline_model"] == [trained_pipeline.summary.model_uri]
    assert inputs["model"] == [summary.model_uri] != inputs["baseline_model"]

    first_dir, *_, last_dir = evaluation_dirs(retrained_pipeline)
    version_1_alone = overall_study_auc(first_dir)[("", False)]
    judged = overall_study_auc(last_dir)
    candidate, baseline = judged[("candidate", False)], judged[("baseline", False)]
    change = judged[("candidate", True)]
    assert baseline == pytest.approx(version_1_alone, abs=1e-6)  # the baseline is version 1
    assert change == pytest.approx(candidate - baseline, abs=1e-6)

    passes_value = candidate >= config.min_study_auc
    passes_change = change >= -config.max_auc_drop
    validation = tfma.load_validation_result(last_dir)
    failed = {("change" if failure.metric_key.is_diff else "value", failure.metric_key.name,
               failure.metric_threshold.HasField("change_threshold"))
              for per_slice in validation.metric_validations_per_slice
              for failure in per_slice.failures}
    expected = ({("value", "study_auc", False)} if not passes_value else set()) | \
        ({("change", "study_auc", True)} if not passes_change else set())
    assert failed == expected, (candidate, baseline, change, validation)
    assert validation.validation_ok == (passes_value and passes_change)
    assert summary.blessed == validation.validation_ok
    assert summary.pushed_version == (2 if validation.validation_ok else None)


def test_shuffled_labels_give_chance_level_auc(tmp_path, pipeline_salt):
    """Labels shuffled per study: a correct study split cannot learn them (a per-slice one could)."""
    import csv
    import random

    from support.pipeline_fixtures import SMALL_MODEL, run_pipeline, synthetic_config

    config, manifest = synthetic_config(tmp_path, studies=40, seed=11, slices=4,
                                        min_study_auc=0.0,
                                        model=dataclasses.replace(SMALL_MODEL, epochs=12))
    with open(config.labels_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = [row["sclerosis"] for row in rows]
    random.Random(5).shuffle(labels)
    with open(config.labels_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["study_uid", "sclerosis"])
        writer.writeheader()
        writer.writerows({"study_uid": row["study_uid"], "sclerosis": label}
                         for row, label in zip(rows, labels))
    run = run_pipeline(config, manifest)
    auc, _ = pushed_model_study_auc(run)
    assert 0.3 <= auc <= 0.7, f"study-level AUC {auc:.3f} with shuffled labels"
