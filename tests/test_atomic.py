"""fastgan.atomic: whole files or none, a temp name per writer, one line on failure, no temp left."""

import os
import threading

import numpy as np
import pytest

from fastgan.atomic import replacing, save_npz, write_text
from fastgan.errors import FastganError


def test_write_text_replaces_whole_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "c.json"  # a missing folder is made
    write_text(path, "old\n")
    write_text(path, "new\n")
    assert path.read_text() == "new\n" and os.listdir(path.parent) == ["c.json"]


def test_a_failed_write_keeps_the_old_file_says_one_line_and_leaves_no_temp(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("old\n")
    with pytest.raises(FastganError, match=r"^cannot write .*c\.json: boom$"):
        with replacing(path) as tmp:
            tmp.write_text("half")
            raise OSError("boom")
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["c.json"]
    with pytest.raises(FastganError, match=r"^cannot save .*a-file: File exists$"):
        write_text(tmp_path / "c.json" / "a-file", "x", what="save")


def test_before_replace_runs_once_the_new_file_is_whole_and_before_it_is_visible(tmp_path):
    path, seen = tmp_path / "c.txt", []
    path.write_text("old")
    with replacing(path, before_replace=lambda: seen.append((path.read_text(), sorted(os.listdir(tmp_path))))) as tmp:
        tmp.write_text("new")
    assert seen[0][0] == "old" and len(seen[0][1]) == 2 and path.read_text() == "new"


def test_every_writer_gets_its_own_temp_name_and_the_last_whole_file_wins(tmp_path):
    """Two writers of one file at once (two trainings filling one data cache) never share a temp file."""
    path = tmp_path / "cache.npz"
    arrays = [{"images": np.full((50, 8, 8), i, np.uint8)} for i in range(8)]
    barrier = threading.Barrier(len(arrays))

    def write(a):
        barrier.wait()
        save_npz(path, a)

    threads = [threading.Thread(target=write, args=(a,)) for a in arrays]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with np.load(path, allow_pickle=False) as f:
        got = f["images"]
    assert got.shape == (50, 8, 8) and len(np.unique(got)) == 1 and os.listdir(tmp_path) == ["cache.npz"]


def test_the_suffix_stays_last_for_writers_that_pick_a_format_by_it(tmp_path):
    with replacing(tmp_path / "a.gif", suffix=".gif") as tmp:
        assert tmp.suffix == ".gif" and tmp.parent == tmp_path
        tmp.write_bytes(b"GIF89a")
    assert (tmp_path / "a.gif").read_bytes() == b"GIF89a"
