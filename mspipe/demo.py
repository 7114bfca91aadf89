"""The demo flow behind `mspipe demo` (mspipe/commands/demo.py): the whole system on a
synthetic hospital export, each step printed.

synthetic DICOM export -> TFX pipeline (v1) -> local model server (TF Serving API) -> gRPC
client predictions -> retrain (v2) -> canary start / analysis / promote or roll back -> web page.
It sits in mspipe, the top layer, because it drives every layer below it.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from components.features import hash_uid, resolve_salt
from mspipe.errors import CommandError

RETRAIN_EXTRA_EPOCHS = 4


@dataclass(frozen=True)
class DemoSettings:
    """What `mspipe demo` can be told; the defaults run in minutes on a laptop's CPU."""
    out: str = "demo_out"                 # working folder, deleted and recreated
    # Sized on the synthetic MNI152 anatomy (measured in-process, the default architecture,
    # 3 random study splits, held-out study AUC): 48 studies of 12 slices at 128x128 with
    # random flips, 16 epochs: 1.00 each time; at 512x512, 8 epochs: 0.49 (a 5.3 M-weight
    # Flatten head does not learn from ~300 slices in minutes of CPU). The production size
    # is `--image-size 512`; tests/e2e/test_end_to_end.py runs that path.
    studies: int = 48                     # synthetic studies: enough for both eval classes
    slices: int = 12                      # axial slices per study
    image_size: int = 128
    epochs: int = 16
    web: bool = True                      # end with the clinicians' web page
    keep_running: bool = False            # keep server and page up (default: if interactive)


def _step(number: int, total: int, title: str) -> None:
    print(f"\n== Step {number}/{total}: {title}", flush=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


REPLICAS = 2  # model server replicas sharing one models.config, as serving/deploy/ runs them
CONFIG_POLL_SECONDS = 2  # each replica re-reads models.config this often (TF Serving's flag)


def serve_arguments(model_config: Path, port: int) -> list[str]:
    """`mspipe serve`'s arguments for the demo's models.config, the ones it runs and prints.
    The config has version labels (stable, canary), which TF Serving (and so `mspipe serve`)
    refuses at startup, before anything loaded, unless the labels flag is on. Every replica
    polls the shared models.config, the fleet's one source of truth."""
    return ["--model_config_file", str(model_config), "--port", str(port),
            "--allow_version_labels_for_unavailable_models=true",
            f"--model_config_file_poll_wait_seconds={CONFIG_POLL_SECONDS}"]


def serve_command_line(model_config: Path, port: int) -> str:
    """The shell command that restarts the demo's server as the demo ran it."""
    return shlex.join(["mspipe", "serve", *serve_arguments(model_config, port)])


@contextlib.contextmanager
def model_server(model_config: Path, port: int, log_path: Path) -> Iterator[str]:
    """`mspipe serve` in its own process, as a deployment would run it; drained on exit."""
    with model_servers(model_config, [port], [log_path]) as targets:
        yield targets[0]


@contextlib.contextmanager
def model_servers(model_config: Path, ports: list[int], log_paths: list[Path]
                  ) -> Iterator[list[str]]:
    """One `mspipe serve` process per port, all reading `model_config`, started together
    (they load in parallel); every one drained on exit."""
    logs, processes = [], []
    try:
        for port, log_path in zip(ports, log_paths):
            logs.append(open(log_path, "w"))
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "mspipe", "serve", *serve_arguments(model_config, port),
                 "--log-level", "WARNING"], stdout=logs[-1], stderr=subprocess.STDOUT))
        targets = [f"127.0.0.1:{port}" for port in ports]
        for target, process, log_path in zip(targets, processes, log_paths):
            _wait_until_serving(target, process, log_path)
        yield targets
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


def _wait_until_serving(target: str, process: subprocess.Popen, log_path: Path,
                        timeout_s: float = 180.0) -> None:
    from serving.api.errors import ServingError
    from serving.client.model_client import ModelClient

    deadline = time.monotonic() + timeout_s
    with ModelClient(target, retries=0, timeout_s=5.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise CommandError(f"model server exited with {process.returncode}; "
                                   f"see {log_path}")
            try:
                if any(state.state == "AVAILABLE" for state in client.model_status()):
                    return
            except ServingError:
                pass
            time.sleep(0.5)
    raise CommandError(f"model server not ready after {timeout_s:.0f} s; see {log_path}")


def _predict_examples(target: str, manifest, data_dir: Path, salt: str) -> None:
    """One MS and one control study through the thin client: what a clinician's tool would do."""
    from serving.client.model_client import ModelClient
    from serving.client.predict import predict_paths

    chosen = {}
    for uid, record in sorted(manifest.studies.items()):
        if record.axial_slices and record.label not in chosen:
            chosen[record.label] = (uid, record)
    with ModelClient(target) as client:
        for label, (uid, record) in sorted(chosen.items(), reverse=True):
            folder = data_dir / record.scanner / uid
            prediction = predict_paths(client, [str(folder)], label="stable")
            study = prediction.studies[0]
            truth = "MS" if label == 1 else "control"
            # Only the salted hash of the study UID is ever printed.
            print(f"study {hash_uid(uid, salt)[:12]} (truth: {truth}, scanner {record.scanner}): "
                  f"P(MS) = {study.probability:.3f}, mean of {study.slice_count} slices "
                  f"({study.rejected_count} files/frames rejected), model version "
                  f"{prediction.model_version}, "
                  f"{'above' if study.above_threshold else 'below'} its "
                  f"{prediction.threshold_source} threshold {prediction.threshold:.3f}")
            for slice_ in prediction.slices[:3]:
                print(f"    slice {slice_.instance_number or slice_.frame_index}: "
                      f"{slice_.probability:.3f}")


def run_demo(settings: DemoSettings) -> None:
    from components.synthetic import generate_dataset
    from components.synthetic.settings import CONSPICUOUS_LESIONS
    from components.trainer.config import ModelConfig
    from mspipe.commands.pipeline import print_summary
    from pipeline.config import PipelineConfig
    from pipeline.local_runner import run_local
    from serving.api.model_config import build_model_config, model_entry, write_model_config
    from serving.rollout.flow import run_canary_demo

    sys.stdout.reconfigure(line_buffering=True)  # steps appear as they happen, even when piped
    total = 7 if settings.web else 6
    out = Path(settings.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.monotonic()

    _step(1, total, f"synthetic hospital export ({settings.studies} studies)")
    data_dir = out / "hospital"
    # realistic anatomy, with the conspicuous lesion load a small model learns from 48 studies
    manifest = generate_dataset(data_dir, studies=settings.studies, seed=0,
                                slices_per_series=settings.slices, **CONSPICUOUS_LESIONS)
    print(manifest.summary())

    _step(2, total, f"TFX pipeline at {settings.image_size}x{settings.image_size}")
    # A few hundred slices: Beam in-process is faster than starting worker processes.
    config = PipelineConfig(data_dir=str(data_dir), labels_path=str(data_dir / "labels.csv"),
                            output_dir=str(out / "pipeline"), serving_dir=str(out / "serving"),
                            model=ModelConfig(image_size=settings.image_size,
                                              epochs=settings.epochs),
                            split_ratios=(("train", 0.6), ("eval", 0.4)),
                            beam_args=("--direct_running_mode=in_memory",))
    summary = run_local(config)
    print_summary(summary, config)
    if summary.pushed_version is None:
        raise CommandError("the first model was not blessed, so there is nothing to serve; "
                           "see the report")

    _step(3, total, f"{REPLICAS} local model server replicas (TF Serving gRPC API) and the "
                    "thin client")
    model_config = out / "serving" / "models.config"
    write_model_config(model_config, build_model_config([model_entry(
        config.model_name, config.model_base_path, versions=[summary.pushed_version],
        labels={"stable": summary.pushed_version})]))
    ports = [_free_port() for _ in range(REPLICAS)]
    logs = [out / f"server-{index + 1}.log" for index in range(REPLICAS)]
    with model_servers(model_config, ports, logs) as targets:
        target, port = targets[0], ports[0]
        print(f"serving {config.model_name} version {summary.pushed_version} (label stable) "
              f"on {REPLICAS} replicas at {', '.join(targets)}; one shared config "
              f"{model_config}")
        print(f"(each replica: {serve_command_line(model_config, port)}, on its own port)")
        _predict_examples(target, manifest, data_dir, resolve_salt(config.salt))

        _step(4, total, f"retrain for {RETRAIN_EXTRA_EPOCHS} more epochs: a candidate version 2")
        retrained = config.with_model(epochs=config.model.epochs + RETRAIN_EXTRA_EPOCHS)
        summary_v2 = run_local(retrained)
        print_summary(summary_v2, retrained)

        _step(5, total, "canary release of the new version")
        if summary_v2.pushed_version is None:
            print("version 2 was not blessed, so no canary starts; stable keeps serving.")
        else:
            eval_dir = os.path.join(summary_v2.examples_uri, "Split-eval")
            run_canary_demo(targets, model_config, config.model_name,
                            summary_v2.pushed_version, eval_dir)

        _step(6, total, "evaluation reports")
        print(f"first run : {summary.report_path}")
        print(f"second run: {summary_v2.report_path}")
        print(f"models    : {config.model_base_path}")
        print(f"serve again: {serve_command_line(model_config, port)}")

        interactive = settings.keep_running or (sys.stdin.isatty() and not os.environ.get("CI"))
        if settings.web:
            _step(7, total, "web page for clinicians")
            from serving.web.app import start_web
            web = start_web(target, "127.0.0.1", 0)
            print(f"open {web.url} and upload a .dcm, a zipped study folder or a .jpg/.png")
            try:
                if interactive:
                    print("press Ctrl-C to stop the page and the model server")
                    _wait_for_interrupt()
                else:
                    print("(not interactive: stopping now; `mspipe demo --keep-running` keeps it up)")
            finally:
                web.stop()
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")


def _wait_for_interrupt() -> None:
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print()
