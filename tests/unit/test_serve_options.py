"""`mspipe serve` takes tensorflow_model_server's flags: spellings, bool forms, defaults,
aliases of our older spellings, the TF Serving flags that mean nothing here, and the
arguments of the deploy files and of the demo's printed command."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from mspipe import demo
from mspipe import main as cli
from mspipe.errors import EXIT_USAGE
from serving.server.settings import INT32_MAX, ServerSettings
from serving.server.tf_serving_flags import IGNORED, REFUSED

DEPLOY = Path(__file__).resolve().parents[2] / "serving" / "deploy"


def settings_of(*arguments: str) -> ServerSettings:
    args = cli.build_parser(["serve"]).parse_args(["serve", *arguments])
    return cli.serve.options.settings_from_args(ServerSettings, args)


def test_defaults_are_tf_servings():
    settings = settings_of("--model_config_file", "m")
    assert settings == ServerSettings("m")
    assert (settings.port, settings.rest_api_port, settings.rest_api_timeout_in_ms) == \
        (8500, 0, 30_000)
    assert (settings.poll_seconds, settings.config_poll_seconds) == (1, 0)
    assert not settings.enable_batching and settings.batching_parameters_file is None
    assert settings.monitoring_config_file is None
    assert not settings.allow_version_labels_for_unavailable_models
    assert not settings.enable_grpc_healthcheck_service
    assert (settings.max_num_load_retries, settings.load_retry_interval_micros) == \
        (5, 60_000_000)
    assert settings.max_message_bytes == INT32_MAX
    assert settings.max_workers == settings.rest_api_num_threads  # 4 per schedulable CPU
    assert (settings.intra_op_threads, settings.inter_op_threads) == (0, 0)


@pytest.mark.parametrize("spelling, expected", [
    ([], False), (["--enable_batching"], True), (["--enable_batching=true"], True),
    (["--enable_batching=True"], True), (["--enable_batching=1"], True),
    (["--enable_batching=false"], False), (["--enable_batching=0"], False),
    (["--enable_batching", "--enable_batching=false"], False)])
def test_bool_flags_take_tf_serving_spellings(spelling, expected):
    assert settings_of("--model_config_file=m", *spelling).enable_batching is expected


def test_bool_flag_with_another_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        settings_of("--model_config_file=m", "--enable_grpc_healthcheck_service=yes please")
    assert exit_.value.code == EXIT_USAGE
    assert "expected true or false" in capsys.readouterr().err


@pytest.mark.parametrize("old, new", [
    (["--model-config", "m"], ["--model_config_file=m"]),
    (["--model-config=m", "--poll-seconds", "0.5"],
     ["--model_config_file=m", "--file_system_poll_wait_seconds=0.5"]),
    (["--model-config=m", "--config-poll-seconds", "3"],
     ["--model_config_file=m", "--model_config_file_poll_wait_seconds=3"]),
    (["--model-config=m", "--max-workers", "3"], ["--model_config_file=m", "--grpc_max_threads=3"]),
    (["--model-config=m", "--allow-version-labels-for-unavailable-models"],
     ["--model_config_file=m", "--allow_version_labels_for_unavailable_models=true"])])
def test_older_spellings_are_aliases(old, new):
    assert settings_of(*old) == settings_of(*new)


def test_our_extensions_keep_their_units():
    assert settings_of("--model_config_file=m", "--max-message-mib=8").max_message_bytes == 8 << 20


def test_parallelism_follows_tf_servings_precedence():
    settings = settings_of("--model_config_file=m", "--tensorflow_session_parallelism=4",
                           "--tensorflow_inter_op_parallelism=2")
    assert (settings.intra_op_threads, settings.inter_op_threads) == (4, 2)


def test_single_model_mode_and_its_usage_errors(capsys):
    settings = settings_of("--model_base_path=/models/x", "--model_name=x")
    assert (settings.model_config, settings.model_name, settings.model_base_path) == \
        (None, "x", "/models/x")
    assert cli.main(["serve"]) == EXIT_USAGE
    assert "--model_config_file" in capsys.readouterr().err
    assert cli.main(["serve", "--model_config_file=m", "--port=9000",
                     "--rest_api_port=9000"]) == EXIT_USAGE
    assert "--rest_api_port cannot be same as --port" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [f.name for f in REFUSED])
def test_tf_serving_flags_that_would_change_answers_are_refused(flag, capsys):
    value = "true" if next(f for f in REFUSED if f.name == flag).kind is bool else "x"
    assert cli.main(["serve", "--model_config_file=m", f"--{flag}={value}"]) == EXIT_USAGE
    assert f"--{flag} is not supported by the local server" in capsys.readouterr().err


def test_tf_serving_tuning_flags_are_accepted():
    parser = cli.build_parser(["serve"])
    arguments = [f"--{f.name}={'true' if f.kind is bool else 1}" for f in IGNORED]
    args = parser.parse_args(["serve", "--model_config_file=m", *arguments,
                              "--saved_model_tags=serve"])  # a refused flag at its default
    assert cli.serve._given_foreign_flags(args) == [f.name for f in IGNORED] + \
        ["saved_model_tags"]


def _deploy_arguments() -> dict[str, list[str]]:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    k8s = {doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text())}
    return {"compose": compose["services"]["tf-serving"]["command"],
            "k8s": k8s["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"]}


@pytest.mark.parametrize("source", ["compose", "k8s"])
def test_deploy_arguments_parse_with_tf_servings_meaning(source):
    settings = settings_of(*_deploy_arguments()[source])
    assert settings == ServerSettings(
        "/config/models.config", port=8500, rest_api_port=8501, config_poll_seconds=10,
        poll_seconds=5, enable_batching=True,
        batching_parameters_file="/config/batching_parameters.txt",
        allow_version_labels_for_unavailable_models=True,
        monitoring_config_file="/config/monitoring_config.txt",
        enable_grpc_healthcheck_service=True)


def test_demo_prints_a_serve_command_that_restarts_on_its_labelled_config():
    line = demo.serve_command_line(Path("demo_out/serving/models.config"), 8500)
    words = shlex.split(line)
    assert words[:2] == ["mspipe", "serve"]
    settings = settings_of(*words[2:])
    assert settings.allow_version_labels_for_unavailable_models
    assert settings.model_config == "demo_out/serving/models.config"
