import os
import stat

import pytest

from pokemon_diffusion.atomic import atomic_path, atomic_write_text


def test_write_replaces_whole_file_with_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.endswith(".keras")  # writers that read the format from the suffix still work
            with open(tmp, "w") as fh:
                fh.write("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_failed_write_is_one_write_error_naming_the_file_and_no_temp(tmp_path, monkeypatch):
    import errno

    from pokemon_diffusion.atomic import check_writable
    from pokemon_diffusion.errors import WriteError

    target = tmp_path / "out.json"
    target.write_text("good")
    with pytest.raises(WriteError, match=f"cannot write {target}: no space left on the device"):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["out.json"]
    with pytest.raises(OSError) as info:  # not a failed write: passed on as it is
        with atomic_path(target):
            raise OSError(errno.EIO, "I/O error")
    assert not isinstance(info.value, WriteError)
    assert check_writable(tmp_path / "new" / "a.png") == tmp_path / "new" / "a.png"
    assert [p.name for p in (tmp_path / "new").iterdir()] == []  # the probe is gone
    with pytest.raises(WriteError, match="out.json is a file, not a folder"):
        check_writable(target / "a.png")
    with pytest.raises(WriteError, match="it is a folder"):
        check_writable(tmp_path / "new")
