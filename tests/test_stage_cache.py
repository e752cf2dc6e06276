"""The classroom cache tool, tested offline on a simulated staged directory."""

import sys
from pathlib import Path

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
