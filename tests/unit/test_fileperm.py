import os
import stat
import tempfile
from pathlib import Path

import pytest

from deploykit.export.savedmodel import replace_path
from deploykit.export.tflite import write_tflite
from deploykit.fileperm import publish
from deploykit.manifest import atomic_write_text


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_text_and_tflite_files_get_0644(tmp_path, umask022):
    atomic_write_text(tmp_path / "manifest.json", "{}")
    write_tflite(b"TFL3", tmp_path / "model.tflite")
    assert mode(tmp_path / "manifest.json") == 0o644
    assert mode(tmp_path / "model.tflite") == 0o644


def test_a_temp_folder_moved_into_place_is_0755_with_0644_files(tmp_path, umask022):
    tmp = Path(tempfile.mkdtemp(dir=tmp_path))
    (tmp / "variables").mkdir(mode=0o700)
    fd, name = tempfile.mkstemp(dir=tmp / "variables")
    os.close(fd)
    replace_path(tmp, tmp_path / "savedmodel")
    final = tmp_path / "savedmodel"
    assert mode(final) == 0o755 and mode(final / "variables") == 0o755
    assert mode(final / "variables" / Path(name).name) == 0o644


def test_the_umask_is_honoured(tmp_path):
    old = os.umask(0o027)
    try:
        (tmp_path / "f").write_text("x")
        os.chmod(tmp_path / "f", 0o600)
        publish(tmp_path / "f")
        assert mode(tmp_path / "f") == 0o640
    finally:
        os.umask(old)
