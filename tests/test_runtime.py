"""The runtime model: notebooks and guide show its predictions, and the predictions respond to the knobs."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.machinery.profiles import PROFILES
from course_utils.machinery.runtime import WORKLOADS, assumptions, predict_runtime

ROOT = Path(__file__).resolve().parents[1]


def test_notebooks_and_guide_agree_with_the_runtime_model():
    result = subprocess.run([sys.executable, "tools/runtime_table.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_notebook_has_a_workload():
    assert {p.stem for p in (ROOT / "notebooks").glob("[0-9]*.ipynb")} == set(WORKLOADS)


def test_prediction_parts_follow_the_knobs():
    """06 on a T4, worked by hand from the profile (60 steps x batch 2 x accumulation 2) and the workload.

    240 sequences x 250 tokens = 60,000 tokens; 8 FLOPs per parameter per token x 8.030e9 parameters (the
    registry's count from the shipped config) = 3.854e15 FLOPs, at 10% (int8) of the T4's 65 TFLOPS: 593 s.
    The download: 16.06 GB (those parameters in 16 bits) at 60 MB/s, 267.7 s.
    """
    t4 = PROFILES["t4"]
    assert (t4.max_steps, t4.batch_size, t4.grad_accum) == (60, 2, 2)
    base = predict_runtime("06_lora_gsm8k", t4)
    assert base["training"] * 60 == pytest.approx(593.0, abs=0.5)
    assert base["download"] * 60 == pytest.approx(267.7, abs=0.1)
    half = predict_runtime("06_lora_gsm8k", dataclasses.replace(t4, max_steps=30))
    assert half["training"] * 60 == pytest.approx(296.5, abs=0.5)  # 120 sequences
    assert predict_runtime("06_lora_gsm8k", PROFILES["a100-rehearsal"])["download"] == base["download"]
    assert predict_runtime("09_persona_sft_zhenhuan", t4)["download"] < base["download"]  # 3.1 vs 16 GB
    assert "Predictions" in assumptions() and "MB/s" in assumptions()


def test_every_predicted_runtime_is_within_the_budget():
    """A guard on the recipes, not a measurement: the model's predictions (unmeasured on a GPU, and
    printed as predictions) stay within the issue's budgets, a T4 notebook 25 minutes with its download
    and an A100 one 10. A recipe that grows past them fails here."""
    for nb in WORKLOADS:
        assert predict_runtime(nb, PROFILES["t4"])["total"] <= 25, nb
        assert predict_runtime(nb, PROFILES["a100"])["total"] <= 10, nb


def test_loads_come_from_the_page_cache_only_when_the_checkpoint_fits_the_ram():
    from course_utils.machinery.runtime import load_seconds

    assert load_seconds(16.1, 3, host_ram_gb=11) == pytest.approx(3 * load_seconds(16.1, 1, host_ram_gb=11))
    assert load_seconds(16.1, 1, host_ram_gb=80) < load_seconds(16.1, 1, host_ram_gb=11) / 5  # A100 VM
    t4, a100 = PROFILES["t4"], PROFILES["a100"]
    assert predict_runtime("07_qlora_llama", t4)["loading"] > predict_runtime("07_qlora_llama", a100)["loading"]


def test_a_recorded_ledger_peak_that_differs_from_the_header_fails_the_check(tmp_path):
    import json

    sys.path.insert(0, str(ROOT / "tools"))
    import runtime_table

    shown = runtime_table.load_peaks()["06_lora_gsm8k"]["t4"]
    record = {"profile": "t4-rehearsal", "target": "t4", "gpu": shown["gpu"] * 1e9, "host": shown["host"] * 1e9}
    (tmp_path / "06_lora_gsm8k.t4-rehearsal.json").write_text(json.dumps(record))
    (tmp_path / "06_lora_gsm8k_solutions.t4-rehearsal.json").write_text(json.dumps({**record, "gpu": 1.0}))
    assert runtime_table.check_peaks(tmp_path) == 0  # solutions are not in the headers
    (tmp_path / "06_lora_gsm8k.t4-rehearsal.json").write_text(json.dumps({**record, "gpu": record["gpu"] + 2e8}))
    assert runtime_table.check_peaks(tmp_path) == 1
    # and what the header shows is that figure
    header = json.loads((ROOT / "notebooks" / "06_lora_gsm8k.ipynb").read_text())["cells"][0]["source"]
    t4_row = next(line for line in header if line.startswith("| t4"))
    assert f"*ledger prediction:* ≈ {shown['gpu']:.1f} GB GPU" in t4_row, t4_row


def test_a_fixed_training_run_ignores_the_step_knobs():
    t4 = PROFILES["t4"]
    fixed = predict_runtime("04_lora_math", t4)["training"]  # two runs of compare_steps (8 on every GPU)
    assert fixed > 0
    assert predict_runtime("04_lora_math", dataclasses.replace(t4, max_steps=1, batch_size=1))["training"] == fixed


def test_comparison_runs_count_and_the_16bit_arm_is_skipped_on_a_t4():
    for gpu in ("t4", "a100"):
        prof = PROFILES[gpu]
        with_arms = predict_runtime("08_qlora_cost_and_merge", prof)["training"]
        without = predict_runtime("08_qlora_cost_and_merge", dataclasses.replace(prof, compare_steps=0, n_eval=0))["training"]
        assert with_arms > without
    t4 = PROFILES["t4"]
    roomy = dataclasses.replace(t4, gpu_memory_gb=40.0)  # the same recipe with room for the 16-bit arm
    assert predict_runtime("08_qlora_cost_and_merge", roomy)["training"] > predict_runtime("08_qlora_cost_and_merge", t4)["training"]


def test_a_load_count_that_differs_from_the_rehearsals_fails_the_check(tmp_path, capsys):
    """The rehearsal kernels record every load_model call; WORKLOADS' loads= must match them."""
    import json

    sys.path.insert(0, str(ROOT / "tools"))
    import runtime_table

    from course_utils.machinery.runtime import main_model_id

    shown = runtime_table.load_peaks()["07_qlora_llama"]["t4"]
    model = main_model_id("07_qlora_llama", PROFILES["t4"])
    assert model == "unsloth/Llama-3.1-8B-Instruct"
    counted = WORKLOADS["07_qlora_llama"].n_loads("t4")
    record = {"profile": "t4-rehearsal", "target": "t4", "gpu": shown["gpu"] * 1e9, "host": shown["host"] * 1e9,
              "loads": {model: counted, "BAAI/bge-small-en-v1.5": 1}}
    path = tmp_path / "07_qlora_llama.t4-rehearsal.json"
    path.write_text(json.dumps(record))
    assert runtime_table.check_peaks(tmp_path) == 0
    path.write_text(json.dumps({**record, "loads": {model: counted + 1}}))  # one more load than counted
    assert runtime_table.check_peaks(tmp_path) == 1
    assert f"loaded {model} {counted + 1} times, the runtime model counts {counted}" in capsys.readouterr().out


def test_06s_generation_is_billed_at_the_cap_its_config_sets():
    """06 sizes max_new_tokens from the longest reference, up to a cap: the runtime model bills that cap."""
    import ast
    import json

    cells = json.loads((ROOT / "notebooks" / "06_lora_gsm8k.ipynb").read_text(encoding="utf-8"))["cells"]
    config = next("".join(c["source"]) for c in cells if "class Config" in "".join(c["source"]))
    field = next(n for n in ast.walk(ast.parse(config))
                 if isinstance(n, ast.AnnAssign) and getattr(n.target, "id", "") == "max_new_tokens_cap")
    assert isinstance(field.value, ast.IfExp) and ast.unparse(field.value.test) == "profile.gpu_recipe"
    assert field.value.body.value == WORKLOADS["06_lora_gsm8k"].gen_tokens  # the GPU profiles' cap
    assert field.value.body.value >= max(PROFILES[g].max_new_tokens for g in ("t4", "l4", "a100"))
