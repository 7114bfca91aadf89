"""AtomicPusher's publishing: integer versions, whole or absent, never the same number twice."""
from __future__ import annotations

import threading

from components.atomic_pusher import executor


def _fake_saved_model(folder, marker: str):
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "variables.index").write_text(marker)
    (folder / "saved_model.pb").write_text(marker)
    return str(folder)


def test_versions_count_up_and_hidden_or_odd_folders_are_ignored(tmp_path):
    base = tmp_path / "models"
    (base / "notes").mkdir(parents=True)
    (base / "7").mkdir()
    model = _fake_saved_model(tmp_path / "model", "m")
    assert executor.publish_version(model, str(base)) == 8
    assert executor.publish_version(model, str(base)) == 9
    assert executor.existing_versions(str(base)) == [7, 8, 9]
    assert sorted(path.name for path in base.iterdir()) == ["7", "8", "9", "notes"]  # no staging left
    assert (base / "9" / "saved_model.pb").read_text() == "m"


def test_two_concurrent_pushes_take_distinct_versions(tmp_path, monkeypatch):
    """Both pushes see the same newest version and choose the same number; the rename that
    claims it lets only one win, and the other takes the next number."""
    base = tmp_path / "models"
    models = [_fake_saved_model(tmp_path / f"model{i}", f"model {i}") for i in range(2)]
    both_chose = threading.Barrier(2, timeout=30)
    real_next_version = executor._next_version
    first_choice = threading.local()

    def next_version_after_both_chose(base_directory: str, taken: int) -> int:
        version = real_next_version(base_directory, taken)
        if not getattr(first_choice, "done", False):
            first_choice.done = True
            both_chose.wait()  # neither has renamed yet: both hold the same number
        return version

    monkeypatch.setattr(executor, "_next_version", next_version_after_both_chose)
    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def push(index: int) -> None:
        try:
            results[index] = executor.publish_version(models[index], str(base))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=push, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert sorted(results.values()) == [1, 2]
    for index, version in results.items():  # each version holds the model that claimed it
        assert (base / str(version) / "saved_model.pb").read_text() == f"model {index}"
        assert (base / str(version) / "variables" / "variables.index").read_text() == f"model {index}"
    assert sorted(path.name for path in base.iterdir()) == ["1", "2"]
