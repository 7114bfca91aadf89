"""Tests that hold for the local server and for the real tensorflow/serving image alike.

By default they run against a local server (tests/support/parity.py); with
`--tf-serving-grpc HOST:PORT [--tf-serving-rest HOST:PORT] [--tf-serving-model NAME]` they run
against that deployment instead, so a difference between the two shows up as a failure here.
Tests that must change the server (write versions, other flags) skip against a deployment.
"""
from __future__ import annotations

import grpc

from serving.api.protos import get_model_status_pb2, model_service_pb2_grpc
from support.parity import STABLE_LABEL, parity_server_settings, parity_target  # noqa: F401


def model_status(target, **spec) -> get_model_status_pb2.GetModelStatusResponse:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = spec.pop("name", target.model_name)
    for field, value in spec.items():
        if field == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, field, value)
    with target.channel() as channel:
        return model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)


def test_model_status_lists_an_available_version(parity_target):
    versions = model_status(parity_target).model_version_status
    assert versions and any(v.state == v.AVAILABLE for v in versions)
    assert all(v.status.error_code == grpc.StatusCode.OK.value[0] for v in versions
               if v.state == v.AVAILABLE)
