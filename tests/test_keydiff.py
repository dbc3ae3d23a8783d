"""The semantic key diff behind change events and reviews."""

from __future__ import annotations

from pathlib import Path

from botreg.changes.keydiff import MISSING, diff_values
from botreg.git.mirror import Credentials, GitMirror


def changes(old: object, new: object) -> list[tuple[str, str, object, object]]:
    return [(c.path, c.kind, c.old, c.new) for c in diff_values(old, new)]


def test_nested_keys_added_removed_changed() -> None:
    old = {"llm": {"model": "a", "temperature": 0.2}, "memory": {"type": "buffer"}}
    new = {"llm": {"model": "b", "max_tokens": 100}, "metadata": {"owner": "x"}}
    assert changes(old, new) == [
        ("llm.model", "changed", "a", "b"),
        ("llm.temperature", "removed", 0.2, None),
        ("llm.max_tokens", "added", None, 100),
        ("memory", "removed", {"type": "buffer"}, None),
        ("metadata", "added", None, {"owner": "x"}),
    ]


def test_list_items_are_matched_by_name_not_position() -> None:
    old = {"tools": [{"name": "a", "x": 1}, {"name": "b", "x": 2}]}
    new = {"tools": [{"name": "b", "x": 3}, {"name": "c", "x": 4}]}
    assert changes(old, new) == [
        ("tools[a]", "removed", {"name": "a", "x": 1}, None),
        ("tools[b].x", "changed", 2, 3),
        ("tools[c]", "added", None, {"name": "c", "x": 4}),
    ]


def test_reordering_alone_is_reported_as_such() -> None:
    old = {"tools": [{"name": "a"}, {"name": "b"}], "domains": ["x", "y"]}
    new = {"tools": [{"name": "b"}, {"name": "a"}], "domains": ["y", "x"]}
    assert changes(old, new) == [
        ("tools", "reordered", ["a", "b"], ["b", "a"]),
        ("domains", "reordered", ["x", "y"], ["y", "x"]),
    ]


def test_secrets_are_masked() -> None:
    old = {"resources": {"db": {"password": "hunter2hunter2", "url": "postgres://u:pw@h/db"}}}
    new = {"resources": {"db": {"password": "changed-secret", "url": "${DB_URL}"}}}
    found = changes(old, new)
    assert ("resources.db.password", "changed", "***", "***") in found
    assert ("resources.db.url", "changed", "***h/db", "${DB_URL}") in found
    assert "hunter2" not in repr(found) and "changed-secret" not in repr(found)


def test_type_change_and_missing() -> None:
    assert changes(1, 1.0) == [("", "changed", 1, 1.0)]
    assert changes(MISSING, {"a": 1}) == [("", "added", None, {"a": 1})]
    assert diff_values({"a": [1, 2]}, {"a": [1, 2]}) == []


def test_token_file_is_read_at_every_fetch_and_stays_off_the_command_line(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    mirror = GitMirror(
        tmp_path / "mirror.git",
        "https://git.example.com/r.git",
        "main",
        Credentials(token_file=token),
    )
    first = mirror._environment()["GIT_CONFIG_VALUE_0"]
    token.write_text("rotated-token\n")
    second = mirror._environment()["GIT_CONFIG_VALUE_0"]
    assert first != second and second.startswith("Authorization: Basic ")
    assert "token" not in (tmp_path / "mirror.git" / "config").read_text()


def test_stale_lock_files_are_cleaned(tmp_path: Path) -> None:
    mirror = GitMirror(tmp_path / "mirror.git", str(tmp_path), "main")
    (tmp_path / "mirror.git" / "index.lock").write_text("")
    (tmp_path / "mirror.git" / "refs" / "heads").mkdir(parents=True, exist_ok=True)
    (tmp_path / "mirror.git" / "refs" / "heads" / "main.lock").write_text("")
    assert sorted(mirror.clean_stale_locks()) == ["index.lock", "refs/heads/main.lock"]
    assert not list((tmp_path / "mirror.git").rglob("*.lock"))
