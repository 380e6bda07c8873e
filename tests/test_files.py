"""File helpers: atomic writes leave complete files with the usual permissions."""

import os
import stat

from bertforge.files import atomic_write_bytes, make_tmp_dir, replace_dir


def test_atomic_write_replaces_whole_file_with_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"one")
        atomic_write_bytes(tmp_path / "f.bin", b"two")
        folder = make_tmp_dir(tmp_path / "d")
        replace_dir(folder, tmp_path / "d")
    finally:
        os.umask(old)
    assert (tmp_path / "f.bin").read_bytes() == b"two"
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.bin"]  # no temporary leftovers
