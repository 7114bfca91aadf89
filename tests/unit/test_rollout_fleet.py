"""Pure parts of the fleet rollout: replica discovery, step plans, check verdicts, and the
pre-flight's signature comparison (on SignatureDef protos, no server)."""
from __future__ import annotations

import socket

import pytest

from serving.api.protos import get_model_metadata_pb2, types_pb2
from serving.rollout.checks import CheckResult, combined_verdict
from serving.rollout.fleet import FleetError, resolve_replicas
from serving.rollout.preflight import signature_problems
from serving.rollout.settings import StepPlan
from serving.rollout.steps import parse_weights, read_plan


def _resolver(table):
    def resolve(host, port, type=None):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(family, socket.SOCK_STREAM, 6, "", (address, int(port)))
                for family, address in table[host]]
    return resolve


def test_replicas_from_repeated_servers_or_one_name_with_several_addresses():
    table = {"ms-mri-serving-headless": [(socket.AF_INET, "10.0.0.7"),
                                         (socket.AF_INET, "10.0.0.8"),
                                         (socket.AF_INET, "10.0.0.7")],
             "localhost": [(socket.AF_INET6, "::1"), (socket.AF_INET, "127.0.0.1")],
             "v6only": [(socket.AF_INET6, "fd00::1")]}
    resolve = _resolver(table)
    assert resolve_replicas(["ms-mri-serving-headless:8500"], resolve) == [
        "10.0.0.7:8500", "10.0.0.8:8500"]
    assert resolve_replicas(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:1"], resolve) == [
        "127.0.0.1:1", "127.0.0.1:2"]
    assert resolve_replicas(["localhost:8500"], resolve) == ["127.0.0.1:8500"]  # IPv4 first
    assert resolve_replicas(["v6only:8500"], resolve) == ["[fd00::1]:8500"]
    with pytest.raises(FleetError, match=r"--server nowhere:8500: cannot resolve 'nowhere'"):
        resolve_replicas(["nowhere:8500"], resolve)
    with pytest.raises(FleetError, match=r"--server 'no-port': expected HOST:PORT"):
        resolve_replicas(["no-port"], resolve)


def test_step_plan_from_flags_and_file(tmp_path):
    assert parse_weights("0,10,50,100") == (0.0, 0.1, 0.5, 1.0)
    with pytest.raises(ValueError, match="must not decrease"):
        StepPlan(weights=parse_weights("0,50,10"))
    with pytest.raises(ValueError, match="within 0..100"):
        StepPlan(weights=parse_weights("0,150"))
    with pytest.raises(ValueError, match="expected percentages"):
        parse_weights("ten,fifty")
    plan_file = tmp_path / "plan.json"
    plan_file.write_text('{"steps": [0, 25, 100], "step_seconds": 5, '
                         '"inconclusive_retries": 1}')
    assert read_plan(plan_file) == StepPlan((0.0, 0.25, 1.0), 5, 1)
    plan_file.write_text('{"steps": [0, 100], "step_secs": 5}')
    with pytest.raises(ValueError, match=r"plan.json: unknown field\(s\) \['step_secs'\]"):
        read_plan(plan_file)
    plan_file.write_text('{"steps": "0,100"}')
    with pytest.raises(ValueError, match="field 'steps' must be a list"):
        read_plan(plan_file)


def test_verdicts_combine_fail_over_inconclusive_over_pass():
    ok, wait = CheckResult("a", "pass"), CheckResult("b", "inconclusive", ("outage",))
    bad = CheckResult("c", "fail", ("error rate 0.3",))
    assert combined_verdict([]) == "pass"
    assert combined_verdict([ok, wait]) == "inconclusive"
    assert combined_verdict([wait, bad, ok]) == "fail"
    assert bad.line() == "c: fail (error rate 0.3)"
    with pytest.raises(ValueError, match="verdict must be one of"):
        CheckResult("d", "rollback")


def _signature_map(input_name="image", dtype=types_pb2.DT_UINT8, size=64, outputs=None):
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    signature = signature_map.signature_def["serving_default"]
    tensor = signature.inputs[input_name]
    tensor.name, tensor.dtype = f"serving_default_{input_name}:0", dtype
    for dim in (-1, size, size, 1):
        tensor.tensor_shape.dim.add().size = dim
    for name in outputs or ("probability", "logit"):
        output = signature.outputs[name]
        output.dtype = types_pb2.DT_FLOAT
        output.tensor_shape.dim.add().size = -1
    return signature_map


def test_preflight_signature_comparison_names_what_breaks_callers():
    stable = _signature_map()
    assert signature_problems(stable, _signature_map(), 1, 2) == []
    assert signature_problems(stable, _signature_map(outputs=("probability", "logit", "x")),
                              1, 2) == []  # an extra output breaks nobody
    assert signature_problems(stable, _signature_map(input_name="pixels"), 1, 2) == [
        "signature 'serving_default': inputs ['pixels'] in version 2, stable version 1 "
        "takes ['image']"]
    assert signature_problems(stable, _signature_map(dtype=types_pb2.DT_FLOAT, size=32),
                              1, 2) == [
        "signature 'serving_default' input 'image': float in version 2, uint8 in stable "
        "version 1",
        "signature 'serving_default' input 'image': shape [None, 32, 32, 1] in version 2, "
        "[None, 64, 64, 1] in stable version 1"]
    assert signature_problems(stable, _signature_map(outputs=("probability",)), 1, 2) == [
        "signature 'serving_default': output 'logit' of stable version 1 is missing in "
        "version 2"]
    other = get_model_metadata_pb2.SignatureDefMap()
    other.signature_def["predict"].CopyFrom(stable.signature_def["serving_default"])
    assert signature_problems(stable, other, 1, 2) == [
        "signature 'serving_default' of stable version 1 is missing in version 2 (it has "
        "['predict'])"]


def test_k8s_replicas_share_one_writable_models_config_and_a_headless_service():
    """What the rollout tool relies on in serving/deploy/k8s.yaml: every replica mounts the
    same ReadWriteMany claim at /config (seeded once from the ConfigMap, never overwritten),
    and a headless Service lists every replica for --server."""
    import yaml
    from pathlib import Path

    documents = list(yaml.safe_load_all(
        (Path(__file__).resolve().parents[2] / "serving/deploy/k8s.yaml").read_text()))
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    claim = by_name[("PersistentVolumeClaim", "ms-mri-serving-config")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    pod = by_name[("Deployment", "ms-mri-serving")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["persistentVolumeClaim"]["claimName"] == "ms-mri-serving-config"
    assert volumes["seed"]["configMap"]["name"] == "ms-mri-serving-config"
    (seed,) = pod["initContainers"]
    assert {m["mountPath"]: m["name"] for m in seed["volumeMounts"]} == {"/config": "config",
                                                                       "/seed": "seed"}
    assert '[ -e "/config/${f##*/}" ] || cp' in seed["command"][-1]  # never overwrites
    server = pod["containers"][0]
    assert "--model_config_file=/config/models.config" in server["args"]
    assert {m["mountPath"]: m["name"] for m in server["volumeMounts"]}["/config"] == "config"
    headless = by_name[("Service", "ms-mri-serving-replicas")]["spec"]
    assert headless["clusterIP"] == "None" or headless["clusterIP"] is None
    assert headless["selector"] == by_name[("Service", "ms-mri-serving")]["spec"]["selector"]
