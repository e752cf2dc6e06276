import json

import pytest

from course_utils import PROFILES
from course_utils.data import hub_allowed, load_records, read_jsonl, write_jsonl


def _sample():
    return [{"q": "generated"}]


def test_order_course_data_dir_first(tmp_path, monkeypatch, capsys):
    write_jsonl([{"q": "local"}, {"q": "local2"}], tmp_path / "set" / "train.jsonl")
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    rows, source = load_records("demo", "set/train.jsonl", _sample, hub=lambda: [{"q": "hub"}], use_hub=True)
    assert rows[0]["q"] == "local" and "COURSE_DATA_DIR" in source
    assert "demo: 2 rows from COURSE_DATA_DIR" in capsys.readouterr().out


def test_then_hub_then_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))  # directory without the file
    rows, source = load_records("demo", "set/train.jsonl", _sample, hub=lambda: [{"q": "hub"}], use_hub=True)
    assert rows == [{"q": "hub"}] and source == "Hugging Face Hub"
    rows, source = load_records("demo", "set/train.jsonl", _sample, hub=lambda: [{"q": "hub"}], use_hub=False)
    assert rows == [{"q": "generated"}] and "generator" in source


def test_limit_and_json_list(tmp_path, monkeypatch):
    (tmp_path / "x.json").write_text(json.dumps([{"i": i} for i in range(10)]))
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    rows, _ = load_records("demo", "x.json", _sample, limit=3)
    assert [r["i"] for r in rows] == [0, 1, 2]


def test_bad_jsonl_line_is_named(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_hub_only_on_gpu_profiles_and_online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert not hub_allowed(PROFILES["cpu"])
    assert hub_allowed(PROFILES["t4"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub_allowed(PROFILES["t4"])
