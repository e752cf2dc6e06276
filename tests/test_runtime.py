"""The runtime model: notebooks and guide show its predictions, and the predictions respond to the knobs."""

import dataclasses
import subprocess
import sys
from pathlib import Path

from course_utils.profiles import PROFILES
from course_utils.runtime import WORKLOADS, assumptions, predict_runtime

ROOT = Path(__file__).resolve().parents[1]


def test_notebooks_and_guide_agree_with_the_runtime_model():
    result = subprocess.run([sys.executable, "tools/runtime_table.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_notebook_has_a_workload():
    assert {p.stem for p in (ROOT / "notebooks").glob("0*.ipynb")} == set(WORKLOADS)


def test_prediction_parts_follow_the_knobs():
    t4 = PROFILES["t4"]
    base = predict_runtime("06_lora_gsm8k", t4)
    half = predict_runtime("06_lora_gsm8k", dataclasses.replace(t4, max_steps=t4.max_steps // 2))
    assert half["training"] * 2 == base["training"] and half["download"] == base["download"]
    assert predict_runtime("06_lora_gsm8k", PROFILES["a100-rehearsal"])["download"] == base["download"]
    assert predict_runtime("08_persona_sft_zhenhuan", t4)["download"] < base["download"]  # 3.1 vs 16 GB
    assert "Predictions" in assumptions() and "MB/s" in assumptions()


def test_comparison_runs_count_and_the_16bit_arm_is_skipped_on_a_t4():
    for gpu in ("t4", "a100"):
        prof = PROFILES[gpu]
        with_arms = predict_runtime("07_qlora_llama", prof)["training"]
        without = predict_runtime("07_qlora_llama", dataclasses.replace(prof, compare_steps=0, n_eval=0))["training"]
        assert with_arms > without
    t4 = PROFILES["t4"]
    roomy = dataclasses.replace(t4, gpu_memory_gb=40.0)  # the same recipe with room for the 16-bit arm
    assert predict_runtime("07_qlora_llama", roomy)["training"] > predict_runtime("07_qlora_llama", t4)["training"]
