"""advjax.files: what advjax reads is a regular file; a FIFO or a device is refused at once."""

import os
import threading

import pytest

from advjax.files import NotRegularFile, open_regular


def test_regular_files_and_links_to_them_open(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")
    for name in ("a.txt", "link"):
        with open_regular(str(tmp_path / name), "r") as f:
            assert f.read() == "hello"
    with pytest.raises(ValueError):
        open_regular(str(tmp_path / "a.txt"), "w")


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_fifos_devices_and_directories_are_refused_without_blocking(tmp_path, kind):
    path = {"fifo": str(tmp_path / "f"), "device": "/dev/zero", "directory": str(tmp_path)}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("e", pytest.raises(NotRegularFile, open_regular, path)))
    t.start()
    t.join(10)
    assert not t.is_alive(), "open_regular blocked"
    assert kind in box["e"].value.strerror.lower()


def test_a_fifo_manifest_or_idx_file_is_one_line_exit_2(tmp_path, capsys):
    from advjax.sweep import main

    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "manifest.json")
    assert main(["--widths", "3", "--seeds", "1", "--out", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resume:" in err
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        os.mkfifo(mnist / name)
    assert main(["--dataset", "mnist", "--mnist-path", str(mnist), "--out", str(tmp_path / "o2"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--mnist-path:" in err and "FIFO" in err, err
