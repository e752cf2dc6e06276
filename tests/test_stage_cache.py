"""The classroom cache tool, tested offline on a simulated staged directory (and one real wheel download)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import stage_cache  # noqa: E402


def test_plan_per_profile():
    assert stage_cache.plan("cpu") == {"models": [], "data": []}  # everything ships in wheels
    t4 = stage_cache.plan("t4")
    assert "unsloth/Llama-3.1-8B-Instruct" in t4["models"]  # the ungated copy: no token needed
    assert "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit" in t4["models"]  # notebook 01's NF4 checkpoint
    assert "gsm8k/train.jsonl" in t4["data"] and "huanhuan.json" in t4["data"]


def _simulated_stage(root: Path) -> Path:
    blob = root / "hf" / "hub" / "models--org--tiny" / "blobs" / "abc"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"weights" * 1000)
    data = root / "data" / "gsm8k" / "train.jsonl"
    data.parent.mkdir(parents=True)
    data.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    stage_cache.write_manifest(root)
    return data


def test_verify_accepts_an_intact_stage(tmp_path, capsys):
    _simulated_stage(tmp_path)
    assert stage_cache.verify(tmp_path) == []
    assert stage_cache.main(["--dest", str(tmp_path), "--verify"]) == 0
    assert "every file matches" in capsys.readouterr().out


def test_verify_names_changed_and_missing_files(tmp_path):
    data = _simulated_stage(tmp_path)
    data.write_text('{"question": "1+1?", "answer": "#### 3"}\n')
    (tmp_path / "hf" / "hub" / "models--org--tiny" / "blobs" / "abc").unlink()
    problems = stage_cache.verify(tmp_path)
    assert "checksum mismatch: data/gsm8k/train.jsonl" in problems
    assert "missing: hf/hub/models--org--tiny/blobs/abc" in problems
    assert stage_cache.main(["--dest", str(tmp_path), "--verify"]) == 1


def test_unstaged_directory_is_reported(tmp_path):
    assert "stage the cache first" in stage_cache.verify(tmp_path)[0]


def test_cpu_profile_needs_no_download(tmp_path, capsys):
    assert stage_cache.main(["--profile", "cpu", "--dest", str(tmp_path)]) == 0
    assert "needs nothing from the Hub" in capsys.readouterr().out


def test_gpu_check_stages_the_bitsandbytes_the_course_runs(tmp_path):
    from importlib.metadata import version

    cmd = stage_cache.gpu_check_download(tmp_path)
    assert f"bitsandbytes=={version('bitsandbytes')}" in cmd  # the version this venv was built with
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd  # never a source build, never a torch


def test_gpu_check_wheel_downloads_for_a_linux_gpu_box(tmp_path, capsys):
    """The real download (43 MB, from pip's cache after the first run): the platform tags find the wheel."""
    import socket

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        pytest.skip("PyPI is unreachable from here: staging needs the internet")
    assert stage_cache.main(["--gpu-check", "--dest", str(tmp_path)]) == 0
    wheels = [w.name for w in (tmp_path / "wheels").glob("*.whl")]
    assert len(wheels) == 1 and wheels[0].startswith("bitsandbytes-0.50") and "manylinux" in wheels[0]
    assert "pip install --no-index --find-links" in capsys.readouterr().out
