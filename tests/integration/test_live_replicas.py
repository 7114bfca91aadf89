"""Live analysis against real local replicas: two `mspipe serve` servers (in process) read one
models.config and export TF Serving's Prometheus metrics; routed callers send real traffic
to each; LiveAnalysis reads both metrics pages. And the labelled analysis when the server dies
under it: "inconclusive", saved, the canary left in place.

The latency rule is checked exactly in tests/unit/test_rollout_live.py; here two busy shared
cores make latency noise, so its slack is wide."""
from __future__ import annotations

from serving.api.errors import ServingError
from serving.client.model_client import ModelClient
from serving.rollout.controller import RolloutController
from serving.rollout.flow import analyze_canary
from serving.rollout.live import LiveAnalysis
from serving.rollout.settings import AnalysisSettings, AnalysisThresholds, RolloutSettings
from serving.rollout.state import read_model_state, state_path_for
from serving.server.metrics import DEFAULT_PATH
from support.rollout_fixtures import (FAST, RoutedLoop, common, initial_config, mspipe,
                                      served_entry, wait_until, write_eval_tfrecords)
from support.serving_fixtures import MODEL_NAME, free_port, running_server

THRESHOLDS = AnalysisThresholds(live_min_requests=20, latency_slack_ms=200.0)


def monitoring_config(tmp_path) -> str:
    path = tmp_path / "monitoring.config"
    path.write_text(f'prometheus_config {{\n  enable: true\n  path: "{DEFAULT_PATH}"\n}}\n')
    return str(path)


def test_live_analysis_over_two_replicas_and_a_replica_stopped_mid_step(tmp_path,
                                                                         model_source):
    model_source.good(1)
    model_source.good(2, logit_shift=0.3)
    config = initial_config(tmp_path, model_source)
    monitoring = monitoring_config(tmp_path)
    replica = dict(rest_api_port=0, monitoring_config_file=monitoring, **FAST)
    with running_server(config, **{**replica, "rest_api_port": free_port()}) as first, \
            running_server(config, **{**replica, "rest_api_port": free_port()}) as second:
        settings = RolloutSettings(model_config=str(config), server=first.address,
                                   model_name=MODEL_NAME, load_timeout_s=60)
        with RolloutController(settings) as controller:
            controller.start(2, weight=0.0)
        second_client = ModelClient(second.address)  # the other replica polls models.config
        wait_until(lambda: _canary_version(second_client) == 2, what="second replica's canary")
        loops = [RoutedLoop(server.address, config) for server in (first, second)]
        for loop in loops:
            loop.start()
        stopped_replica = second.rest_address
        # as the step loop builds it: REST base URLs, the weight from the rollout state
        live = LiveAnalysis([f"http://{first.rest_address}", f"http://{stopped_replica}"],
                            MODEL_NAME, THRESHOLDS, model_config=config)

        def step(answers: int) -> None:
            sent = [len(loop.answers) for loop in loops]
            wait_until(lambda: sum(len(loop.answers) - n for loop, n in zip(loops, sent))
                       >= answers, timeout_s=60, what=f"{answers} answers")

        live.begin()  # shadow step (weight 0): stable alone, the baseline
        step(60)
        baseline = live.judge(1, 2)
        assert baseline.verdict == "pass", baseline
        assert "stable-only baseline kept" in baseline.reasons[0]

        with RolloutController(settings) as controller:
            controller.set_weight(0.5)
        live.begin()
        step(120)
        healthy = live.judge(1, 2)
        assert healthy.verdict == "pass", healthy
        assert "at weight 50%" in healthy.reasons[0]
        assert any(r.startswith(f"replica http://{stopped_replica}: ") for r in healthy.reasons)

        with RolloutController(settings) as controller:  # a canary every request of which
            controller.rollback(reason="test")          # fails at run time
            model_source.failing(3)
            controller.start(3, weight=0.5)
        wait_until(lambda: _canary_version(second_client) == 3, what="second replica's canary")
        second_client.close()
        live.begin()
        step(120)
        broken = live.judge(1, 3)
        assert broken.verdict == "fail", broken
        assert any(r.startswith("FAIL canary error rate") for r in broken.reasons), broken

        live.begin()
        step(20)
        second.stop(grace_s=0.5)
        stopped = live.judge(1, 2)
        for loop in loops:
            loop.finish()
    assert stopped.verdict == "inconclusive", stopped
    assert f"replica http://{stopped_replica} unreachable at the step's end" \
        in stopped.reasons[1]
    assert loops[0].failures == []


def _canary_version(client: ModelClient) -> int | None:
    """The version the replica resolves `canary` to, once AVAILABLE there."""
    try:
        states = client.model_status(label="canary")
    except ServingError:  # not yet: the label or the version is still loading
        return None
    return next((s.version for s in states if s.state == "AVAILABLE"), None)


def test_server_dying_during_analysis_is_inconclusive_and_saved(tmp_path, model_source):
    model_source.good(1)
    model_source.good(2, logit_shift=0.3)
    config = initial_config(tmp_path, model_source)
    data = write_eval_tfrecords(tmp_path / "eval")
    with running_server(config, **FAST) as server:
        settings = RolloutSettings(model_config=str(config), server=server.address,
                                   model_name=MODEL_NAME, load_timeout_s=60)
        with ModelClient(server.address, retries=0, timeout_s=5) as client:
            controller = RolloutController(settings, client)
            controller.start(2, weight=0.1)
            log: list[str] = []

            def kill_on_start(message: str) -> None:  # the server dies as analysis begins
                log.append(message)
                if message.startswith("shadow analysis:"):
                    server.stop(grace_s=0)

            outcome = analyze_canary(controller, data, auto=True, log=kill_on_start,
                                     settings=AnalysisSettings(batch_size=16))
    assert outcome.action == "inconclusive", log
    assert outcome.report.decision == "inconclusive"
    assert "stable failed too" in outcome.report.inconclusive_reason
    assert "UNAVAILABLE" in outcome.report.inconclusive_reason
    saved = read_model_state(state_path_for(config), MODEL_NAME)
    assert saved.analysis["decision"] == "inconclusive"
    assert saved.canary_version == 2  # nothing rolled back
    assert served_entry(config) == ((1, 2), {"stable": 1, "canary": 2})
    assert any(line.startswith("inconclusive, canary version 2 kept") for line in log)
    with running_server(config, allow_version_labels_for_unavailable_models=True,
                        **FAST) as restarted:  # as the issue saw it: after a restart
        code, out, err = mspipe("status", *common(restarted, config))
    assert code == 0, err
    assert "decision inconclusive (stable failed too (" in out
    assert "canary     version 2 at weight 0.10" in out
