"""`mspipe`: every command's --help, the exit-code and error-message convention of
mspipe/main.py, the one declaration of the server's options, and light client commands."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mspipe import main as cli
from mspipe.errors import EXIT_USAGE
from serving.server.settings import MIB, ServerSettings

REPO = Path(__file__).resolve().parents[2]
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: every client call fails fast


@pytest.mark.parametrize("command", [
    [], ["synth"], ["ingest"], ["pipeline", "run"], ["pipeline", "compile"], ["serve"],
    ["predict"], ["rollout", "start"], ["rollout", "status"], ["rollout", "analyze"], ["web"],
    ["demo"]], ids=" ".join)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(" ".join(["usage: mspipe", *command]))


def test_usage_errors_exit_2_with_argparse_message(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["predict", "scan.dcm"])
    assert exit_.value.code == EXIT_USAGE
    assert "mspipe predict: error: the following arguments are required: --server" in \
        capsys.readouterr().err


def test_serve_options_are_the_server_settings():
    """Defaults, units and names come from ServerSettings; refused values are usage errors."""
    parser = cli.build_parser(["serve"])
    args = parser.parse_args(["serve", "--model-config", "models.config"])
    assert cli.serve.options.settings_from_args(ServerSettings, args) == \
        ServerSettings("models.config")
    args = parser.parse_args(["serve", "--model-config", "m", "--max-message-mib", "8",
                              "--port", "0", "--allow-version-labels-for-unavailable-models",
                              "--tls-cert", "c.pem", "--tls-key", "k.pem"])
    assert cli.serve.options.settings_from_args(ServerSettings, args) == ServerSettings(
        "m", port=0, max_message_bytes=8 * MIB, allow_version_labels_for_unavailable_models=True,
        tls_cert_file="c.pem", tls_key_file="k.pem")


def test_expected_failure_is_one_line_on_stderr(capsys):
    assert cli.main(["serve", "--model-config", "m", "--tls-cert", "c.pem"]) == EXIT_USAGE
    assert capsys.readouterr().err == \
        "mspipe serve: error: TLS needs both a certificate and its key (--tls-cert, --tls-key)\n"


def test_client_commands_fail_in_one_line_without_loading_tensorflow(tmp_path):
    """predict and rollout against a server that is not there: exit 1, one line each, and
    neither run (nor web's option parsing) imports TensorFlow."""
    image = tmp_path / "slice.png"
    image.write_bytes(b"not read: the server is asked for metadata first")
    code = (
        "import contextlib, io, sys\n"
        "from mspipe.main import main\n"
        "codes = []\n"
        f"for argv in (['predict', {str(image)!r}, '--server', {UNREACHABLE!r}],\n"
        f"             ['rollout', 'status', '--server', {UNREACHABLE!r}, '--model-config',\n"
        f"              {str(tmp_path / 'models.config')!r}, '--timeout', '1']):\n"
        "    codes.append(main(argv))\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['web', '--help'])\n"
        "heavy = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tfx'))\n"
        "print(codes, heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "[1, 1] []", result.stdout + result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 2, result.stderr
    assert errors[0].startswith(f"mspipe predict: error: model server {UNREACHABLE}: UNAVAILABLE")
    assert errors[1].startswith("mspipe rollout status: error: ")
    assert "slice.png" not in result.stderr  # input paths stay out of error messages
