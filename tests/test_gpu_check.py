"""tools/gpu_check.py in its CPU mode: tiny configs, the T4 rows, its own plumbing (~15 s)."""

import json
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory, load_tool):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: run `make gpu-check` for the real check")
    gc = load_tool("gpu_check")
    out = tmp_path_factory.mktemp("gpu_check") / "result.json"
    result = gc.run(["t4"], out)
    return gc, result, out


def test_rows_filled_and_json_valid(cpu_run):
    gc, result, out = cpu_run
    data = json.loads(out.read_text())
    assert data["tiny"] and data["device"] == "cpu" and data["gpu"] is None
    expected = len(gc.LOAD_ROWS) + len(gc.TRAIN_ROWS) + len(gc.GEN_ROWS)
    assert len(data["rows"]) == expected
    for row in data["rows"]:
        assert row["status"] == "ok", row
        assert row["profile"] == "t4" and row["notebook"] in gc.runtime.WORKLOADS
        assert row["pred_bytes"] > 0 and row["allocated"] > 0
        assert math.isfinite(row["mem_ratio"]) and row["mem_ratio"] > 0
        if row["kind"] != "load" or row["quant"]:  # a quantized load times bitsandbytes' quantization
            assert row["seconds"] > 0 and row["pred_seconds"] > 0 and math.isfinite(row["time_ratio"])
    # the 16-bit load holds more than the int8 one, which holds more than NF4 (measured, not predicted)
    loads = {r["quant"]: r["allocated"] for r in data["rows"] if r["kind"] == "load"}
    assert loads[None] > loads["int8"] and loads[None] > loads["nf4"]
    assert all(c["ok"] for c in data["checks"]), data["checks"]


def test_predictions_are_the_course_functions(cpu_run):
    gc, result, _ = cpu_run
    row = next(r for r in result["rows"] if r["notebook"] == "07_qlora_llama" and r["kind"] == "train")
    config = gc.real_config("chat", tiny=True)
    real = gc.memory.meta_model(config)
    run = gc.TrainingRun.lora(real, 16, gc.ALL_LINEAR, batch_size=row["batch"], seq_len=row["seq"],
                              gradient_checkpointing=True, optim="paged_adamw_8bit", dtype=torch.float16)
    parts = gc.lora_training_bill(real, run, "nf4")
    assert row["pred_bytes"] == pytest.approx(sum(parts.values()) - parts["cuda_context"])


def test_real_scale_rows_skip_what_the_recipe_does_not_hold(load_tool):
    gc = load_tool("gpu_check")
    row = next(r for r in gc.plan(["t4"], tiny=False) if r["kind"] == "load" and r["quant"] is None)
    out = gc.run_row(row, "cpu", tiny=False, capacity=1e15)  # skipped before anything is built
    assert out["status"] == "skipped" and "t4 recipe" in out["reason"] and out["pred_bytes"] > 14e9


def test_write_puts_the_measured_block_in_the_guide(cpu_run, tmp_path):
    gc, result, out = cpu_run
    guide = tmp_path / "GUIDE.md"
    guide.write_text("# Guide\n\ntext\n")
    gc.write_guide(out, guide, allow_cpu=True)
    gc.write_guide(out, guide, allow_cpu=True)  # idempotent: one block, replaced
    text = guide.read_text()
    assert text.count(gc.START) == 1 and text.count(gc.END) == 1
    assert f"Measured on CPU (tiny configs; not GPU figures), {result['date']}" in text
    assert "| t4 | 07 | train nf4" in text


def test_write_refuses_the_cpu_modes_figures(cpu_run, tmp_path):
    gc, _, out = cpu_run
    guide = tmp_path / "GUIDE.md"
    guide.write_text("# Guide\n")
    with pytest.raises(SystemExit, match="not a GPU's"):
        gc.write_guide(out, guide)
    with pytest.raises(SystemExit, match="not a GPU's"):
        gc.main(["--write", str(out)])
    assert guide.read_text() == "# Guide\n"


def test_write_puts_each_notebooks_rows_in_its_header(cpu_run, tmp_path):
    gc, result, out = cpu_run
    for name in ("07_qlora_llama.ipynb", "04_lora_math.ipynb"):
        (tmp_path / name).write_text((ROOT / "notebooks" / name).read_text(encoding="utf-8"), encoding="utf-8")
    assert gc.write_headers(out, tmp_path, allow_cpu=True) == ["07_qlora_llama.ipynb"]  # 04 is not measured
    gc.write_headers(out, tmp_path, allow_cpu=True)  # idempotent
    nb = json.loads((tmp_path / "07_qlora_llama.ipynb").read_text(encoding="utf-8"))
    header = "".join(nb["cells"][0]["source"])
    assert header.count(gc.START) == 1 and header.count(gc.END) == 1
    original = json.loads((ROOT / "notebooks" / "07_qlora_llama.ipynb").read_text(encoding="utf-8"))
    assert header.startswith("".join(original["cells"][0]["source"]).rstrip("\n"))  # the rest is kept
    assert nb["cells"][1:] == original["cells"][1:]
    rows = [r for r in result["rows"] if r["notebook"] == "07_qlora_llama"]
    train = next(r for r in rows if r["kind"] == "train")
    block = header.split(gc.START)[1]
    assert len([line for line in block.splitlines() if line.startswith("| t4 |")]) == len(rows)
    assert f"| {gc._gb(train['pred_bytes'])} | {gc._gb(train['allocated'])} |" in block
    assert (tmp_path / "04_lora_math.ipynb").read_text(encoding="utf-8") == \
        (ROOT / "notebooks" / "04_lora_math.ipynb").read_text(encoding="utf-8")
