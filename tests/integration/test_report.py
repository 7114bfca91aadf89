"""The HTML evaluation report, built from a real (tiny) Evaluator run, model and ledger."""
from __future__ import annotations

import html
import json
import os
import re

import pytest

from support import eval_fixtures as fx
from support.browser import full_page_screenshot, headless_chromium

pytest.importorskip("tensorflow_model_analysis")
pytest.importorskip("matplotlib")

from components.dicom_example_gen import properties  # noqa: E402
from components.evaluation.eval_config import build_eval_config  # noqa: E402
from components.evaluation_report.report import write_report  # noqa: E402

REJECTS = {"non_axial": 5, "not_dicom": 2, "constant_image": 1}
TRAIN_SLICES = (fx.SliceSpec("t1", "ge", 1, 200, 200), fx.SliceSpec("t1", "ge", 1, 190, 210),
                fx.SliceSpec("t2", "siemens", 0, 30, 30))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def pipeline_outputs(tmp_path_factory):
    """Examples (train + eval), candidate and baseline models, a ledger, two Evaluator runs."""
    root = tmp_path_factory.mktemp("report_inputs")
    examples = root / "examples"
    fx.write_split(str(examples / "Split-eval"))
    fx.write_split(str(examples / "Split-train"), TRAIN_SLICES)
    candidate = fx.write_model_artifact(str(root / "candidate"))
    baseline = fx.write_model_artifact(str(root / "baseline"), baseline=True)
    config = build_eval_config(min_study_auc=0.8, max_auc_drop=0.0)  # any drop fails
    return {
        "root": root, "examples": str(examples), "candidate": candidate,
        "eval_split": str(examples / "Split-eval"), **_recorded_counts(),
        "model_dir": os.path.join(candidate, "Format-Serving"),
        "first_run": fx.run_evaluator(str(root / "first"), config, examples_uri=str(examples),
                                      model_uri=candidate),
        "vs_baseline": fx.run_evaluator(str(root / "second"), config, examples_uri=str(examples),
                                        model_uri=candidate, baseline_model_uri=baseline),
    }


def _recorded_counts() -> dict:
    """Split sizes and reject counts as DicomExampleGen records them on its artifacts (the
    sizes of fx.EVAL_SLICES and TRAIN_SLICES), read back the way the report's executor does."""
    from tfx.types import artifact_utils, standard_artifacts

    from components.dicom_example_gen.component import RejectLedger

    examples, ledger = standard_artifacts.Examples(), RejectLedger()
    examples.split_names = artifact_utils.encode_split_names(["eval", "train"])
    properties.record_split_sizes(examples, {"eval": properties.SplitSize(11, 6, 3),
                                             "train": properties.SplitSize(3, 2, 1)}, 0)
    properties.record_reject_counts(ledger, REJECTS)
    return {"split_sizes": properties.read_split_sizes(examples),
            "rejects": properties.read_reject_counts(ledger)}


def _write(outputs, out_dir, run_name: str, **overrides) -> tuple[str, str]:
    run = outputs[run_name]
    kwargs = dict(evaluation_uri=run.evaluation_uri, model_dir=outputs["model_dir"],
                  eval_examples_uri=outputs["eval_split"], split_sizes=outputs["split_sizes"],
                  rejects=outputs["rejects"],
                  blessed=run.blessed, pushed_version=None, model_name="ms_mri")
    kwargs.update(overrides)
    path = write_report(str(out_dir), **kwargs)
    with open(path, encoding="utf-8") as handle:
        return path, handle.read()


@pytest.fixture(scope="module")
def rejected_report(pipeline_outputs) -> tuple[str, str]:
    """The report of the run that lost to the last blessed model (written once, read by many)."""
    return _write(pipeline_outputs, pipeline_outputs["root"] / "report_rejected", "vs_baseline")


def _text(page: str) -> str:
    """The visible text, for phrase checks: inline tags dropped, block tags and cells spaced."""
    page = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    page = re.sub(r"</?(b|span|code)\b[^>]*>", "", page)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_rejected_model_report_says_why_and_that_nothing_was_pushed(pipeline_outputs,
                                                                    rejected_report):
    assert not pipeline_outputs["vs_baseline"].blessed
    path, page = rejected_report
    text = _text(page)
    assert os.path.basename(path) == "index.html"
    assert "NOT BLESSED" in text and "Not pushed: not blessed" in text
    # The failing check: study AUC 0.8333 vs the last blessed model's 1.0.
    assert re.search(r"Failed check: AUC per study: needs candidate - last blessed >= 0\.000, "
                     r"was -0\.1667", text)
    assert re.search(r"AUC per study absolute bound >= 0\.800 0\.8333 pass", text)
    assert re.search(r"AUC per study 0\.8333 1\.0000 -0\.1667", text)


def test_report_figures_exist_and_are_pngs(rejected_report):
    path, page = rejected_report
    images = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(images) == ["calibration.png", "confusion.png", "roc.png"]
    for image in images:
        with open(os.path.join(os.path.dirname(path), image), "rb") as handle:
            content = handle.read()
        assert content.startswith(PNG_MAGIC) and len(content) > 10_000, image


def test_report_numbers_are_labelled_per_slice_and_per_study(rejected_report):
    _, page = rejected_report
    text = _text(page)
    # Headline rows: per study AUC 7.5/9, per slice AUC 0.8 (both hand-computed, see fixtures).
    assert re.search(r"per study 6 0\.833 0\.833 0\.667 1\.000 1\.000", text)
    assert re.search(r"per slice 11 0\.800 0\.727 0\.667 0\.800 0\.800", text)
    # Per scanner: slices, studies, MS / control, AUC per slice, AUC per study.
    assert re.search(r"ge 6 3 1 / 2 0\.667 1\.000", text)
    assert re.search(r"siemens 5 3 2 / 1 0\.833 0\.750", text)
    assert "AUC per slice" in text and "AUC per study" in text
    # Dataset sizes per split, train first.
    assert re.search(r"train 2 1 / 1 3 eval 6 3 / 3 11", text)
    # No study identifiers, not even the salted hashes.
    for spec in fx.EVAL_SLICES + TRAIN_SLICES:
        assert fx.hashed_study_id(spec.study_id) not in page


def test_report_gives_study_intervals_and_says_the_eval_set_is_too_small(rejected_report):
    """3 MS + 3 control eval studies: AUC per study 0.833 with a wide bootstrap interval, and
    the plain statement that this cannot conclude. The fixture model has no threshold of its
    own, so the fixed fallback 0.5 is used and named as such."""
    path, page = rejected_report
    text = _text(page)
    with open(os.path.join(os.path.dirname(path), "study_metrics.json")) as handle:
        recorded = json.load(handle)
    assert recorded["threshold"] == 0.5 and recorded["threshold_source"] == "fallback"
    assert (recorded["positives"], recorded["negatives"]) == (3, 3)
    auc = recorded["auc"]
    assert auc["estimate"] == pytest.approx(7.5 / 9)
    assert auc["low"] < auc["estimate"] <= auc["high"] <= 1.0
    assert f"AUC per study {auc['estimate']:.3f} (95% CI {auc['low']:.3f}-{auc['high']:.3f})" \
        in text
    sensitivity = recorded["sensitivity"]
    assert f"sensitivity per study {sensitivity['estimate']:.3f} (95% CI" in text
    assert not recorded["conclusive"]
    assert "The eval split is too small to conclude: 3 MS and 3 control studies" in text
    assert "Rule for \"too small to conclude\": fewer than 10 studies of either class" in text
    assert "0.5, the fixed fallback" in text
    # every control is below 0.5: specificity 1.0 in every resample, which is not certainty
    assert recorded["specificity"] == {"estimate": 1.0, "low": 1.0, "high": 1.0}
    assert "A zero-width interval (specificity) does not mean certainty" in text
    # the Evaluator's own record carries the interval too (StudyAUC's extra metrics)
    assert re.search(r"AUC per study, 95% CI lower bound 0\.\d{4}", text)


def test_report_counts_rejects_per_reason_in_plain_words(rejected_report):
    _, page = rejected_report
    text = _text(page)
    assert "Rejected inputs: 8 files or frames" in text
    assert re.search(r"non_axial 5 a slice in another direction", text)
    assert re.search(r"not_dicom 2 not a DICOM file", text)
    assert re.search(r"constant_image 1 a blank image", text)


def test_blessed_model_report_shows_the_pushed_version(pipeline_outputs, tmp_path):
    assert pipeline_outputs["first_run"].blessed
    _, page = _write(pipeline_outputs, tmp_path / "report", "first_run", pushed_version=7)
    text = _text(page)
    assert "BLESSED: the Evaluator accepted this model" in text
    assert "Pushed as ms_mri version 7" in text
    assert "No previously blessed model exists (first run)" in text
    assert "Warning" not in text  # blessing flag and TFMA validation agree


def test_component_executor_reads_what_upstream_components_recorded(pipeline_outputs, tmp_path):
    """The executor takes sizes and reject counts from the artifacts' properties, the verdict
    from the blessing and the version from the pushed model: nothing read from guessed paths."""
    from tfx.types import artifact_utils, standard_artifacts

    from components.dicom_example_gen.component import RejectLedger
    from components.evaluation_report.component import EvaluationReportArtifact
    from components.evaluation_report.executor import Executor

    def artifact(kind, uri: str):
        instance = kind()
        instance.uri = uri
        return instance

    examples = artifact(standard_artifacts.Examples, pipeline_outputs["examples"])
    examples.split_names = artifact_utils.encode_split_names(["eval", "train"])
    properties.record_split_sizes(examples, {"eval": properties.SplitSize(11, 6, 3),
                                             "train": properties.SplitSize(3, 2, 1)}, 0)
    ledger = artifact(RejectLedger, str(tmp_path / "rejects"))
    properties.record_reject_counts(ledger, REJECTS)
    blessing = artifact(standard_artifacts.ModelBlessing, pipeline_outputs["first_run"].blessing_uri)
    blessing.set_int_custom_property("blessed", 1)
    pushed = artifact(standard_artifacts.PushedModel, str(tmp_path / "pushed"))
    pushed.set_int_custom_property("pushed", 1)
    pushed.set_string_custom_property("pushed_version", "3")
    report = artifact(EvaluationReportArtifact, str(tmp_path / "report"))
    Executor().Do(
        {"examples": [examples], "rejects": [ledger],
         "model": [artifact(standard_artifacts.Model, pipeline_outputs["candidate"])],
         "evaluation": [artifact(standard_artifacts.ModelEvaluation,
                                 pipeline_outputs["first_run"].evaluation_uri)],
         "blessing": [blessing], "pushed_model": [pushed]},
        {"report": [report]}, {"model_name": "ms_mri"})
    text = _text((tmp_path / "report" / "index.html").read_text(encoding="utf-8"))
    assert "BLESSED: the Evaluator accepted this model" in text
    assert "Pushed as ms_mri version 3" in text
    assert re.search(r"train 2 1 / 1 3 eval 6 3 / 3 11", text)
    assert "Rejected inputs: 8 files or frames" in text


def test_report_refuses_an_image_size_the_model_does_not_take(pipeline_outputs, tmp_path):
    with pytest.raises(ValueError, match="model expects 16px images, report was asked for 32px"):
        _write(pipeline_outputs, tmp_path / "report", "first_run", image_size=32)


def test_report_names_an_empty_eval_split(pipeline_outputs, tmp_path):
    empty = tmp_path / "Split-eval"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no TFRecord files"):
        _write(pipeline_outputs, tmp_path / "report", "first_run", eval_examples_uri=str(empty))


def test_report_renders_in_a_headless_browser(rejected_report, tmp_path):
    """What a reader sees: the verdict as rendered text, every figure decoded at a readable
    size, and nothing wider than the window (no sideways scrolling to read a table)."""
    path, _ = rejected_report
    with headless_chromium() as chrome:
        chrome.get(f"file://{path}")
        seen = chrome.execute_script("""return {
            text: document.body.innerText,
            images: [...document.images].map(image => [image.getAttribute('src'),
                                                      image.complete ? image.naturalWidth : 0]),
            rows: [...document.querySelectorAll('tr')].map(
                row => row.innerText.replace(/\\s+/g, ' ').trim()),
            overflow: document.documentElement.scrollWidth - window.innerWidth};""")
        screenshot = full_page_screenshot(chrome, tmp_path / "page.png")
    assert "NOT BLESSED" in seen["text"] and "Not pushed: not blessed" in seen["text"]
    # The headline and per-scanner tables as rendered (visible cells only), with the
    # hand-computed numbers of test_report_numbers_are_labelled_per_slice_and_per_study.
    for row in ("per study 6 0.833 0.833 0.667 1.000 1.000",
                "per slice 11 0.800 0.727 0.667 0.800 0.800",
                "ge 6 3 1 / 2 0.667 1.000", "siemens 5 3 2 / 1 0.833 0.750"):
        assert any(shown.startswith(row) for shown in seen["rows"]), seen["rows"]
    assert sorted(src for src, _ in seen["images"]) == ["calibration.png", "confusion.png",
                                                        "roc.png"]
    assert all(width >= 400 for _, width in seen["images"]), seen["images"]
    assert seen["overflow"] <= 0
    assert screenshot.read_bytes().startswith(PNG_MAGIC)


def test_report_says_when_the_model_has_no_explanation_signature(rejected_report):
    """The test model predates serving_explain: a sentence, no heat-map figure."""
    path, page = rejected_report
    assert "Where the model looked" in _text(page)
    assert "exports no serving_explain signature" in _text(page)
    assert not [name for name in os.listdir(os.path.dirname(path)) if name.startswith("gradcam")]
