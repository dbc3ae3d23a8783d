"""The installed package ships the same schemas and template as the source tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_ships_schemas_and_template(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(PROJECT),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("botreg-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for folder, prefix in (
            ("schemas", "botreg/_data/schemas/"),
            ("registry-repo-template", "botreg/_data/registry-repo-template/"),
        ):
            source = PROJECT / folder
            files = [p for p in source.rglob("*") if p.is_file()]
            assert files
            for path in files:
                name = prefix + path.relative_to(source).as_posix()
                assert name in names, name
                assert archive.read(name) == path.read_bytes(), name
        entry_points = archive.read(f"{wheel.name.split('-')[0]}-0.1.0.dist-info/entry_points.txt")
        assert b"botreg = botreg.cli:console_main" in entry_points
