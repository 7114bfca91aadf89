"""Canary rollout: start -> weighted sticky split -> analyze -> promote / roll back, against
the local TF-Serving-compatible server, driven only through the TF Serving API."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from support.rollout_fixtures import (FAST, RoutedLoop, common, initial_config, mspipe,
                              served_entry, wait_until, write_eval_tfrecords)
from serving.client.model_client import ModelClient
from serving.rollout.analysis import AnalysisReport, decide
from serving.rollout.controller import RolloutController, RolloutError
from serving.rollout.settings import AnalysisThresholds, RolloutSettings
from components.dicom.records import RecordError, read_tfrecords
from serving.rollout.data import (DataSummary, EvalDataError, eval_split_files,
                                  slices_from_tfrecords)
from serving.rollout.checks import CheckResult
from serving.rollout.flow import analysis_verdict, run_canary_demo
from serving.rollout.settings import StepPlan
from serving.rollout.steps import run_steps
from serving.rollout.state import (ModelRollout, RolloutStateError, read_model_state,
                                   state_path_for, write_states)
from serving.client.predict import predict_routed, read_studies
from serving.rollout.traffic import CanaryRouter, routing_point
from support.serving_fixtures import (IMAGE_SIZE, MODEL_NAME, brain_like_frames, random_images,
                              running_server, write_mr_dicom)

# Two busy shared cores make the p99 of a few dozen requests noise; the latency rule itself
# is checked exactly in test_decide_reports_each_check_with_value_and_threshold.
LENIENT_LATENCY = ["--max-p99-latency-ratio", "10", "--latency-slack-ms", "200"]


# ------------------------------------------------------------------ pure parts
def test_router_split_is_weighted_sticky_and_only_grows(tmp_path):
    client = ModelClient("127.0.0.1:9")  # never called: label_for is pure
    keys = [f"study-{i}" for i in range(20000)]
    router = CanaryRouter(client, weight=0.2, salt="rollout-salt")
    canary = {key for key in keys if router.label_for(key) == "canary"}
    assert abs(len(canary) / len(keys) - 0.2) < 0.015
    assert all(router.label_for(key) == "canary" for key in list(canary)[:500])  # sticky
    wider = CanaryRouter(client, weight=0.5, salt="rollout-salt")
    assert canary <= {key for key in keys if wider.label_for(key) == "canary"}
    other_salt = CanaryRouter(client, weight=0.2, salt="another rollout")
    assert canary != {key for key in keys if other_salt.label_for(key) == "canary"}
    assert all(CanaryRouter(client, 0.0, "s").label_for(k) == "stable" for k in keys[:500])
    points = np.array([routing_point(key, "s") for key in keys])
    assert points.min() >= 0.0 and points.max() < 1.0
    # no rollout state file: not rollout-managed, requests name no label at all
    followed = CanaryRouter.from_rollout_state(client, tmp_path / "models.config")
    assert followed.stable_label is None and followed.weight == 0.0
    state = ModelRollout(stable_version=1, canary_version=2, weight=0.25, salt="x")
    write_states(state_path_for(tmp_path / "models.config"), {MODEL_NAME: state})
    assert (followed.stable_label, followed.weight) == ("stable", 0.25)  # re-read on change
    state_path_for(tmp_path / "models.config").write_text("{ half a file")
    assert followed.weight == 0.25  # a broken state file never fails a caller
    with pytest.raises(RolloutStateError, match="models.config.rollout.json: not JSON"):
        read_model_state(state_path_for(tmp_path / "models.config"), MODEL_NAME)
    client.close()


def test_tfrecord_reader_matches_tensorflow_and_names_bad_input(tmp_path):
    folder = write_eval_tfrecords(tmp_path / "eval", studies=4, slices_per_study=2)
    shard = next(folder.iterdir())
    ours = list(read_tfrecords(shard))
    theirs = [r.numpy() for r in tf.data.TFRecordDataset(str(shard), compression_type="GZIP")]
    assert ours == theirs and len(ours) == 8
    summary = DataSummary("tfrecords")
    slices = list(slices_from_tfrecords(folder, IMAGE_SIZE, summary))
    assert len(slices) == 8 and summary.files == 1 and slices[0][0].shape == (32, 32, 1)
    with pytest.raises(EvalDataError, match="feature 'image' has 1024 bytes, expected 16x16"):
        list(slices_from_tfrecords(folder, 16, DataSummary("tfrecords")))
    plain = tmp_path / "plain.tfrecord"
    with tf.io.TFRecordWriter(str(plain)) as out:
        for record in theirs:
            out.write(record)
    assert list(read_tfrecords(plain)) == theirs
    truncated = tmp_path / "truncated.tfrecord"
    truncated.write_bytes(plain.read_bytes()[:-100])
    with pytest.raises(RecordError, match="truncated.tfrecord: record 7 is truncated"):
        list(read_tfrecords(truncated))
    with pytest.raises(EvalDataError, match="truncated.tfrecord: record 7 is truncated"):
        list(slices_from_tfrecords(truncated, IMAGE_SIZE, DataSummary("tfrecords")))
    artifact = tmp_path / "examples"  # a whole Examples artifact: only Split-eval is read
    (artifact / "Split-train").mkdir(parents=True)
    (artifact / "Split-train" / "train.gz").write_bytes(shard.read_bytes())
    with pytest.raises(EvalDataError, match="holds Split-\\* folders but no Split-eval"):
        eval_split_files(artifact)
    (artifact / "Split-eval").mkdir()
    (artifact / "Split-eval" / "eval.gz").write_bytes(shard.read_bytes())
    assert eval_split_files(artifact) == [artifact / "Split-eval" / "eval.gz"]
    (tmp_path / "notes.txt").write_text("hello, not a record file")
    with pytest.raises(RecordError, match="notes.txt: record 0"):
        list(read_tfrecords(tmp_path / "notes.txt"))


def test_decide_reports_each_check_with_value_and_threshold():
    def metrics(error_rate=0.0, p99=10.0, auc=0.8, versions=None):
        return {"error_rate": error_rate, "errors": {}, "latency_p99_ms": p99,
                "study_auc": auc, "auc_studies": 10, "versions": versions or {}}
    limits = AnalysisThresholds(max_auc_drop=0.02, max_error_rate=0.0,
                                max_p99_latency_ratio=1.5, latency_slack_ms=5.0,
                                min_agreement=0.9)
    good = AnalysisReport(1, 2, 100, 10, 5, {"stable": metrics(versions={"1": 5}),
                                             "canary": metrics(p99=19.9, auc=0.785,
                                                               versions={"2": 5})},
                          {"agreement": 0.95, "compared_slices": 100})
    checks = {c.name: c for c in decide(good, limits)}
    assert all(c.passed for c in checks.values()), [c.describe() for c in checks.values()]
    assert checks["p99 latency ratio"].value == pytest.approx(1.99)  # within 1.5 * 10 + 5
    bad = AnalysisReport(1, 2, 100, 10, 5, {"stable": metrics(), "canary": metrics(
        error_rate=0.01, p99=20.5, auc=0.75, versions={"1": 1, "2": 4})},
        {"agreement": 0.85, "compared_slices": 100})
    failed = {c.name: c for c in decide(bad, limits) if not c.passed}
    assert set(failed) == {"canary error rate", "study AUC drop", "p99 latency ratio",
                           "agreement with stable", "canary answered by version 2"}
    assert failed["study AUC drop"].describe().startswith(
        "FAIL study AUC drop = 0.05 (must be <= 0.02)")
    undefined = AnalysisReport(1, 2, 4, 2, 0, {"stable": metrics(auc=float("nan")),
                                              "canary": metrics(auc=float("nan"))},
                               {"agreement": 1.0, "compared_slices": 4})
    assert not {c.name: c for c in decide(undefined, limits)}["study AUC drop"].passed



def test_an_outage_of_stable_too_is_inconclusive_never_a_rollback():
    """The server dying during the analysis fails stable's requests as well as the canary's:
    that says nothing about the canary."""
    def metrics(error_slices, errors=None):
        return {"error_rate": error_slices / 10, "error_slices": error_slices,
                "errors": errors or {}, "latency_p99_ms": 10.0, "study_auc": 0.8,
                "auc_studies": 10, "versions": {}, "requests": 10,
                "failed_codes": {"UNAVAILABLE": error_slices} if error_slices else {}}
    outage = {"UNAVAILABLE: Socket closed": 10}
    report = AnalysisReport(1, 2, 10, 5, 2, {"stable": metrics(10, outage),
                                             "canary": metrics(10, outage)},
                            {"agreement": float("nan"), "compared_slices": 0})
    report.checks = decide(report, AnalysisThresholds())
    verdict = analysis_verdict(report)
    assert verdict.verdict == "inconclusive"
    assert "stable failed too (10 UNAVAILABLE of 10 requests)" in verdict.reasons[0]
    report.labels["stable"] = metrics(0)
    assert analysis_verdict(report).verdict == "fail"


class ScriptedCheck:
    """A step check answering the verdicts given, in order (the live check's seam)."""
    name = "scripted"

    def __init__(self, *verdicts):
        self.verdicts, self.begun = list(verdicts), 0

    def begin(self):
        self.begun += 1

    def judge(self, stable_version, canary_version):
        return CheckResult(self.name, self.verdicts.pop(0), (f"v{canary_version}",))


def test_steps_wait_on_inconclusive_resume_after_a_stop_and_roll_back_on_fail(tmp_path,
                                                                              model_source):
    model_source.good(1)
    model_source.good(2, logit_shift=0.3)
    config = initial_config(tmp_path, model_source)
    plan = StepPlan((0.0, 0.5, 1.0), step_seconds=0, inconclusive_retries=1,
                    retry_wait_seconds=0)
    with running_server(config, **FAST) as server:
        settings = RolloutSettings(str(config), server.address, load_timeout_s=60)
        with RolloutController(settings) as controller:
            controller.start(2, weight=0.0)
            lines: list[str] = []
            check = ScriptedCheck("pass", "inconclusive", "inconclusive")
            with pytest.raises(RolloutError, match="stayed inconclusive after 2 tries"):
                run_steps(controller, plan, [check], log=lines.append)
            state = read_model_state(state_path_for(config), MODEL_NAME)
            assert (state.step, state.weight, state.steps) == (1, 0.5, [0.0, 0.5, 1.0])
            assert served_entry(config) == ((1, 2), {"stable": 1, "canary": 2})  # no rollback

            # the tool comes back (a crash looks the same): it resumes at step 2
            check = ScriptedCheck("pass", "fail")
            outcome = run_steps(controller, StepPlan((0.0, 1.0), step_seconds=0), [check],
                                log=lines.append)
            assert outcome.action == "rolled back" and check.begun == 2
            assert "resuming at step 2 of 3" in lines
            assert any("recorded steps 0 % -> 50 % -> 100 %" in line for line in lines)
            assert served_entry(config) == ((1,), {"stable": 1})
            last = read_model_state(state_path_for(config), MODEL_NAME).history[-1]
            assert last["event"] == "rollback"
            assert last["reason"] == "step 3 (100%): scripted: v2"


# ------------------------------------------------------------------ against the server
def test_canary_split_then_promote_with_zero_failed_requests(tmp_path, model_source):
    model_source.good(1)
    model_source.good(2, logit_shift=0.3)
    config = initial_config(tmp_path, model_source)
    with running_server(config, **FAST) as server:
        loop = RoutedLoop(server.address, config)
        loop.start()
        wait_until(lambda: len(loop.answers) > 20, what="first answers")
        code, out, err = mspipe("start", *common(server, config), "--version", "2",
                                "--weight", "0.2")
        assert code == 0, err
        assert "canary     version 2 at weight 0.20" in out
        assert served_entry(config) == ((1, 2), {"stable": 1, "canary": 2})
        started = len(loop.answers)
        wait_until(lambda: sum(label == "canary" for _, label, _ in loop.answers[started:]) >= 60,
                   timeout_s=60, what="canary answers")
        after = loop.answers[started:]
        assert all(version == {"stable": 1, "canary": 2}[label] for _, label, version in after)
        share = sum(label == "canary" for _, label, _ in after) / len(after)
        expected = sum(loop.router.label_for(k) == "canary" for k in loop.keys) / len(loop.keys)
        # 1000 keys: sd 0.013 of the keys' share; ~300 answers: sd ~0.025 of the answers'
        assert abs(expected - 0.2) < 0.07 and abs(share - expected) < 0.12, (share, expected)
        by_study: dict[str, set[int]] = {}
        for key, _, version in after:
            by_study.setdefault(key, set()).add(version)
        assert all(len(versions) == 1 for versions in by_study.values())  # sticky per study

        code, out, err = mspipe("status", *common(server, config), "--json")
        status = json.loads(out)
        assert code == 0 and status["labels"] == {"stable": 1, "canary": 2}
        assert status["served_labels"] == {"stable": 1, "canary": 2}
        assert status["rollout"]["weight"] == 0.2 and status["warnings"] == []
        code, _, err = mspipe("start", *common(server, config), "--version", "2")
        assert code == 1 and "a canary is already running (version 2)" in err

        code, out, err = mspipe("promote", *common(server, config))
        assert code == 0, err
        assert served_entry(config) == ((2,), {"stable": 2})
        promoted = len(loop.answers)
        wait_until(lambda: len(loop.answers) > promoted + 30, what="answers after promote")
        loop.finish()
        client = ModelClient(server.address)
        assert {s.version: s.state for s in client.model_status()} == {1: "END",
                                                                         2: "AVAILABLE"}
        client.close()
    assert loop.failures == []
    assert {version for _, _, version in loop.answers[promoted + 5:]} == {2}
    state = read_model_state(state_path_for(config), MODEL_NAME)
    assert (state.stable_version, state.canary_version, state.weight) == (2, None, 0.0)
    assert [event["event"] for event in state.history] == ["label_stable", "start", "promote"]


def test_broken_canaries_are_rolled_back_and_stable_never_stops(tmp_path, model_source):
    model_source.good(1)
    model_source.nan(3)
    model_source.bad_signature(4)
    broken = model_source.base / "5"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    config = initial_config(tmp_path, model_source)
    eval_dir = write_eval_tfrecords(tmp_path / "Split-eval")
    with running_server(config, **FAST) as server:
        loop = RoutedLoop(server.address, config)  # its canary share falls back to stable
        loop.start()
        settings = RolloutSettings(str(config), server.address, load_timeout_s=60)
        with RolloutController(settings) as controller:
            with pytest.raises(RolloutError, match="version 5 failed to load"):
                controller.start(5)
            assert served_entry(config) == ((1,), {"stable": 1})
            with pytest.raises(RolloutError, match=r"version 9 is not under the model's "
                                                   r"base_path \(versions there: \[1, 3, 4, 5\]"):
                controller.start(9)

            controller.start(3, weight=0.5)
            code, out, err = mspipe("analyze", *common(server, config), "--data",
                                    str(eval_dir), "--auto", "--batch-size", "8")
            assert code == 3, err
            assert "FAIL canary error rate = 1 (must be <= 0)" in out
            assert "36 slice(s): non-finite or out-of-range probability" in out
            assert "rolling back version 3" in out
            assert served_entry(config) == ((1,), {"stable": 1})
            state = read_model_state(state_path_for(config), MODEL_NAME)
            assert state.analysis["complete"] and state.analysis["decision"] == "rollback"
            assert state.analysis["labels"]["stable"]["error_rate"] == 0.0
            assert state.history[-1]["event"] == "rollback"

            # pre-flight, before any label: a renamed input, NaN outputs on a probe batch
            with pytest.raises(RolloutError, match=r"pre-flight refused version 4: signature "
                               r"'serving_default': inputs \['pixels'\] in version 4, stable "
                               r"version 1 takes \['image'\]"):
                controller.start(4)
            assert served_entry(config) == ((1,), {"stable": 1})
            with pytest.raises(RolloutError, match=r"pre-flight refused version 3: output "
                               r"'probability': 4 of 4 probe slices are not finite"):
                controller.start(3, probe=random_images(4))
            assert served_entry(config) == ((1,), {"stable": 1})
            events = read_model_state(state_path_for(config), MODEL_NAME).history
            assert [e["event"] for e in events[-2:]] == ["preflight_refused"] * 2

            # the broken version 5 replaced by a good one: its earlier failure is not reported
            shutil.rmtree(broken)
            model_source.good(5, logit_shift=0.1)
            controller.start(5, weight=0.0, probe=random_images(4))
            assert served_entry(config) == ((1, 5), {"stable": 1, "canary": 5})
            controller.rollback(reason="test")
            assert served_entry(config) == ((1,), {"stable": 1})
            code, _, err = mspipe("promote", *common(server, config))
            assert code == 1 and "no canary to promote" in err
        loop.finish()
    assert loop.failures == [] and len(loop.answers) > 10
    assert {version for _, _, version in loop.answers} == {1}
    assert loop.router.stats.canary_fallbacks > 0


def test_good_canary_is_analyzed_on_dicom_and_promoted_by_the_demo(tmp_path, model_source):
    model_source.good(1)
    model_source.good(2, logit_shift=0.05)
    config = initial_config(tmp_path, model_source)
    hospital = tmp_path / "hospital"
    rows = ["study_uid,sclerosis"]
    for study in range(6):
        uid = f"1.2.826.0.1.3680043.8.498.{100 + study}"
        for instance in (1, 2):
            write_mr_dicom(hospital / "SCANNER" / f"study{study}" / "series" / f"{instance}.dcm",
                           brain_like_frames(1, seed=10 * study + instance),
                           instance_number=instance, study_uid=uid, series_uid=f"{uid}.1")
        rows.append(f"{uid},{study % 2}")
    (hospital / "SCANNER" / "study0" / "series" / "notes.txt").write_text("not an image")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    eval_dir = write_eval_tfrecords(tmp_path / "Split-eval")
    with running_server(config, **FAST) as server:
        assert mspipe("start", *common(server, config), "--version", "2")[0] == 0
        strangers = tmp_path / "other_labels.csv"
        strangers.write_text("study_uid,sclerosis\n1.2.3.999,1\n")
        code, _, err = mspipe("analyze", *common(server, config), "--data", str(hospital),
                              "--labels", str(strangers), "--auto")
        assert code == 1 and "no usable labelled slice" in err and "unlabeled_study" in err
        assert served_entry(config) == ((1, 2), {"stable": 1, "canary": 2})  # undecided
        code, out, err = mspipe("analyze", *common(server, config), "--data", str(hospital),
                                "--labels", str(labels), *LENIENT_LATENCY)
        assert code == 0, err
        assert "analysis of 12 slices in 6 studies (3 positive)" in out
        assert "verdict: promote" in out
        analysis = read_model_state(state_path_for(config), MODEL_NAME).analysis
        assert analysis["data"]["skipped"] == {"not_dicom": 1}
        assert analysis["agreement"]["agreement"] >= 0.9
        assert analysis["labels"]["canary"]["study_auc"] == analysis["labels"]["stable"][
            "study_auc"]  # a shifted logit keeps every ranking
        assert str(hospital / "SCANNER" / "study0") not in json.dumps(analysis)
        study = hospital / "SCANNER" / "study1"
        files = sorted(str(p) for p in study.rglob("*.dcm"))
        keys = lambda paths: [s.key for s in read_studies(paths, IMAGE_SIZE)[1]]  # noqa: E731
        assert keys([str(study)]) == keys(files[::-1]) and len(keys(files)) == 1
        assert "1.2.826" not in keys(files)[0]  # a hash, never the raw UID
        with ModelClient(server.address) as client:
            everyone = CanaryRouter(client, weight=1.0, salt="s")
            (routed,) = predict_routed(client, [str(study)], everyone)
            assert (routed.routed_to, routed.fell_back, routed.model_version) == \
                ("canary", False, 2)
            assert routed.studies[0].slice_count == 2
            nobody = CanaryRouter(client, 0.0, "s")
            assert [r.model_version for r in predict_routed(client, files, nobody)] == [1]
        assert mspipe("rollback", *common(server, config))[0] == 0
        assert served_entry(config) == ((1,), {"stable": 1})

        printed: list[str] = []
        outcome = run_canary_demo(server.address, config, MODEL_NAME, 2, eval_dir,
                                  print_fn=printed.append,
                                  thresholds=AnalysisThresholds(max_p99_latency_ratio=10,
                                                                latency_slack_ms=200))
        assert outcome.action == "promoted", printed
        assert served_entry(config) == ((2,), {"stable": 2})
        text = "\n".join(printed)
        for step in ("starting canary: version 2", "labelling it 'canary'",
                     "analysis of 36 slices in 12 studies", "PASS canary error rate",
                     "promoting version 2", "promoted: labels now {'stable': 2}"):
            assert step in text, text


def test_server_restart_keeps_labels_versions_and_weight(tmp_path, model_source):
    model_source.good(1)
    model_source.good(2, logit_shift=0.3)
    config = initial_config(tmp_path, model_source)
    with running_server(config, **FAST) as server:
        assert mspipe("start", *common(server, config), "--version", "2",
                      "--weight", "0.3")[0] == 0
    # the deployment starts TF Serving with --allow_version_labels_for_unavailable_models:
    # at startup labels are read before their versions have loaded (serving/deploy/)
    with running_server(config, allow_version_labels_for_unavailable_models=True,
                        **FAST) as server:
        client = ModelClient(server.address)
        wait_until(lambda: {s.state for s in client.model_status()} == {"AVAILABLE"},
                   what="both versions loaded after the restart")
        images = random_images(2)
        assert client.predict_tensors(images, label="stable").model_version == 1
        assert client.predict_tensors(images, label="canary").model_version == 2
        router = CanaryRouter.from_rollout_state(client, config)
        assert router.weight == 0.3
        code, out, _ = mspipe("status", *common(server, config))
        assert code == 0 and "labels     canary -> 2, stable -> 1" in out
        assert "canary     version 2 at weight 0.30" in out and "warning" not in out
        code, out, err = mspipe("rollback", *common(server, config))
        assert code == 0, err
        assert served_entry(config) == ((1,), {"stable": 1})
        assert router.weight == 0.0 and router.label_for("any study") == "stable"
        assert client.predict_tensors(images, label="stable").model_version == 1
        client.close()
