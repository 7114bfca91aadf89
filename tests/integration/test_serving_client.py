"""The thin client: same preprocessing as training, same numbers as an in-process call."""
from __future__ import annotations

import contextlib
import datetime
import ipaddress
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
from PIL import Image

from components.dicom.preprocessing import PreprocessedSlice, preprocess_path
from serving.api.errors import ServingError
from serving.client.model_client import ModelClient
from serving.client.predict import predict_paths
from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.api.protos import model_service_pb2_grpc, prediction_service_pb2_grpc
from support.serving_fixtures import (IMAGE_SIZE, MODEL_NAME, brain_like_frames, free_port,
                              random_images, reference_predict, running_server, save_version,
                              write_mr_dicom)


@pytest.fixture(scope="module")
def client_on_version_1(tmp_path_factory):
    root = tmp_path_factory.mktemp("client")
    version_dir = save_version(root / MODEL_NAME, 1)
    write_model_config(root / "models.config",
                       build_model_config([model_entry(MODEL_NAME, root / MODEL_NAME)]))
    with running_server(root / "models.config", poll_seconds=0.5) as server:
        with ModelClient(server.address) as client:
            yield client, version_dir, root


def tensors(path) -> np.ndarray:
    slices = [s for s in preprocess_path(path, image_size=IMAGE_SIZE)
              if isinstance(s, PreprocessedSlice)]
    return np.stack([s.image for s in slices])


def test_metadata_gives_the_image_size(client_on_version_1):
    client, _, _ = client_on_version_1
    metadata = client.metadata()
    assert (metadata.model_name, metadata.model_version) == (MODEL_NAME, 1)
    assert metadata.image_size == IMAGE_SIZE and metadata.input_dtype == "uint8"
    assert {"serving_default", "serving_examples"} <= set(metadata.signature_names)


def test_dicom_through_grpc_equals_in_process_savedmodel(client_on_version_1, tmp_path):
    client, version_dir, _ = client_on_version_1
    dicom = write_mr_dicom(tmp_path / "slice.dcm", brain_like_frames(1, seed=4))
    report = predict_paths(client, [str(dicom)])
    assert report.rejections == [] and len(report.slices) == 1
    expected = reference_predict(version_dir, tensors(dicom))
    assert report.slices[0].probability == float(expected["probability"][0])
    assert report.slices[0].logit == float(expected["logit"][0])
    assert report.model_version == 1
    # a loose DICOM file still belongs to its study (its StudyInstanceUID)
    assert [(s.slice_count, s.path) for s in report.studies] == [(1, None)]


def test_multi_frame_dicom_gives_one_result_per_frame(client_on_version_1, tmp_path):
    client, version_dir, _ = client_on_version_1
    dicom = write_mr_dicom(tmp_path / "enhanced.dcm", brain_like_frames(3, seed=5))
    report = predict_paths(client, [str(dicom)])
    assert [s.frame_index for s in report.slices] == [0, 1, 2]
    expected = reference_predict(version_dir, tensors(dicom))["probability"]
    np.testing.assert_allclose([s.probability for s in report.slices], expected, rtol=1e-6)


def test_folder_studies_by_uid_with_mean_probability_and_rejections(client_on_version_1, tmp_path):
    """A study is its StudyInstanceUID, wherever its files lie; the PNG (no UID) falls back to
    the folder given; report.txt (no UID, no slice) belongs to no study."""
    client, version_dir, _ = client_on_version_1
    study = tmp_path / "study"
    write_mr_dicom(study / "s1.dcm", brain_like_frames(1, seed=1), instance_number=1)
    write_mr_dicom(study / "series2" / "s2.dcm", brain_like_frames(1, seed=2),
                   instance_number=2)
    picture = np.clip(brain_like_frames(1, seed=3)[0] // 8, 0, 255).astype(np.uint8)
    Image.fromarray(picture).save(study / "screenshot.png")
    (study / "report.txt").write_text("free text is not an image")
    report = predict_paths(client, [str(study)])
    assert len(report.slices) == 3
    assert [(r.reason, r.study) for r in report.rejections] == [("not_dicom", None)]
    dicom_study, images = report.studies
    assert dicom_study.study.startswith("uid:") and images.study.startswith("image:")
    assert "1.2.826" not in dicom_study.study  # a hash, never the raw UID
    assert [(s.slice_count, s.rejected_count, s.path) for s in report.studies] == [
        (2, 0, str(study)), (1, 0, str(study))]
    for summary in report.studies:
        assert summary.probability == pytest.approx(np.mean(
            [s.probability for s in report.slices if s.study == summary.study]))
    images = np.concatenate([tensors(study / "s1.dcm"), tensors(study / "screenshot.png"),
                             tensors(study / "series2" / "s2.dcm")])
    expected = reference_predict(version_dir, images)["probability"]
    by_name = {s.path.rsplit("/", 1)[1]: s.probability for s in report.slices}
    np.testing.assert_allclose([by_name["s1.dcm"], by_name["screenshot.png"],
                                by_name["s2.dcm"]], expected, rtol=1e-6)


def test_missing_file_is_a_rejection_not_a_crash(client_on_version_1, tmp_path):
    client, _, _ = client_on_version_1
    report = predict_paths(client, [str(tmp_path / "absent.dcm")])
    assert report.slices == [] and report.rejections[0].reason == "unreadable_file"


def test_batches_are_split_and_answered_by_one_version(client_on_version_1):
    client, version_dir, _ = client_on_version_1
    small = ModelClient(client.target, max_batch=3)
    images = random_images(7, seed=9)
    result = small.predict_tensors(images)
    small.close()
    assert result.model_version == 1 and result.probabilities.shape == (7,)
    np.testing.assert_allclose(result.probabilities,
                               reference_predict(version_dir, images)["probability"], rtol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        client.predict_tensors(images.astype(np.float32))


def test_unknown_version_raises_server_error(client_on_version_1):
    client, _, _ = client_on_version_1
    with pytest.raises(ServingError) as caught:
        client.predict_tensors(random_images(1), version=42)
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


class FlakyServer(prediction_service_pb2_grpc.PredictionServiceServicer,
                  model_service_pb2_grpc.ModelServiceServicer):
    """Answers UNAVAILABLE `unavailable` times, then NOT_FOUND; counts the attempts it saw."""

    def __init__(self, unavailable: int):
        self.unavailable, self.attempts = unavailable, 0

    def _answer(self, context):
        self.attempts += 1
        if self.attempts <= self.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        context.abort(grpc.StatusCode.NOT_FOUND, "no such model")

    def GetModelMetadata(self, request, context):
        self._answer(context)

    def HandleReloadConfigRequest(self, request, context):
        self._answer(context)

    def Predict(self, request, context):
        self._answer(context)


@contextlib.contextmanager
def flaky_server(unavailable: int):
    service = FlakyServer(unavailable)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        server.stop(grace=None)


@pytest.mark.parametrize("retries, unavailable, code, attempts", [
    (3, 2, grpc.StatusCode.NOT_FOUND, 3),     # retried until answered; other codes are final
    (1, 3, grpc.StatusCode.UNAVAILABLE, 2),   # bounded: retries + 1 attempts, then the error
    (0, 1, grpc.StatusCode.UNAVAILABLE, 1),
])
def test_channel_retries_only_unavailable_and_only_so_often(retries, unavailable, code,
                                                            attempts):
    with flaky_server(unavailable) as (address, service):
        with ModelClient(address, retries=retries, backoff_s=0.01, timeout_s=10) as client:
            with pytest.raises(ServingError) as caught:
                client.metadata()
    assert (caught.value.code, service.attempts) == (code, attempts)


@pytest.mark.parametrize("images", [1, 4])
def test_a_predict_of_full_size_images_is_retried(images):
    """A 512^2 uint8 request is over gRPC's default retry buffer (256 KiB): without a buffer
    that holds the whole request, gRPC commits the call and never retries it."""
    with flaky_server(unavailable=2) as (address, service):
        with ModelClient(address, retries=3, backoff_s=0.01, timeout_s=10) as client:
            with pytest.raises(ServingError) as caught:
                client.predict_tensors(np.zeros((images, 512, 512, 1), np.uint8))
    assert (caught.value.code, service.attempts) == (grpc.StatusCode.NOT_FOUND, 3)


def test_reload_config_is_not_retried():
    with flaky_server(unavailable=1) as (address, service):
        with ModelClient(address, retries=3, backoff_s=0.01, timeout_s=10) as client:
            with pytest.raises(ServingError) as caught:
                client.reload_config(build_model_config([]))
    assert (caught.value.code, service.attempts) == (grpc.StatusCode.UNAVAILABLE, 1)


def test_retries_beyond_what_grpc_allows_are_refused():
    with pytest.raises(ValueError, match="retries must be 0..4"):
        ModelClient("127.0.0.1:1", retries=8)


def test_unavailable_is_retried_with_bounded_backoff(client_on_version_1):
    client, _, root = client_on_version_1
    port = free_port()
    started = time.monotonic()
    with ModelClient(f"127.0.0.1:{port}", retries=2, backoff_s=0.05, timeout_s=2) as nowhere:
        with pytest.raises(ServingError) as caught:
            nowhere.metadata()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 10
    # a server that comes up while the client is retrying is reached
    from serving.server.grpc_server import ModelServer, ServerSettings
    late = ModelServer(ServerSettings(str(root / "models.config"), port=port))
    starter = threading.Timer(0.5, late.start)
    starter.start()
    try:
        with ModelClient(f"127.0.0.1:{port}", retries=4, backoff_s=0.2, timeout_s=5) as patient:
            assert patient.predict_tensors(random_images(1)).model_version == 1
    finally:
        starter.join()
        late.stop(grace_s=1)


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "server.pem", tmp_path / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_client_verifies_the_server(client_on_version_1, tmp_path):
    _, _, root = client_on_version_1
    cert, key = _self_signed(tmp_path)
    with running_server(root / "models.config", tls_cert_file=str(cert),
                        tls_key_file=str(key)) as server:
        with ModelClient(server.address, tls_ca=str(cert)) as secure:
            assert secure.predict_tensors(random_images(1)).model_version == 1
        with ModelClient(server.address, retries=0, timeout_s=3) as plaintext:
            with pytest.raises(ServingError):
                plaintext.metadata()
