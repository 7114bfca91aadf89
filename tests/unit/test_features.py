"""The example contract's helpers: salted UID hashes and where the salt comes from."""
from __future__ import annotations

import pytest

from components.features import DEFAULT_SALT, hash_uid, resolve_salt


def test_hash_is_keyed_stable_and_not_the_uid():
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert hash_uid(uid, "a") == hash_uid(uid + " ", "a")  # padding in headers is ignored
    assert hash_uid(uid, "a") != hash_uid(uid, "b")
    assert uid not in hash_uid(uid) and len(hash_uid(uid)) == 24


def test_salt_from_literal_file_or_environment(tmp_path, monkeypatch):
    assert resolve_salt(DEFAULT_SALT) == DEFAULT_SALT
    secret_file = tmp_path / "salt.txt"
    secret_file.write_text("from-a-file\n")
    assert resolve_salt(f"file:{secret_file}") == "from-a-file"
    monkeypatch.setenv("SITE_SALT", "from-the-env")
    assert resolve_salt("env:SITE_SALT") == "from-the-env"


@pytest.mark.parametrize("spec, message", [
    ("env:NO_SUCH_SALT_VARIABLE", "environment variable NO_SUCH_SALT_VARIABLE"),
    ("file:/nonexistent/salt.txt", "salt file /nonexistent/salt.txt"),
    ("", "salt is empty"),
])
def test_missing_salt_is_a_clear_error(spec, message, monkeypatch):
    monkeypatch.delenv("NO_SUCH_SALT_VARIABLE", raising=False)
    with pytest.raises(ValueError, match=message):
        resolve_salt(spec)
