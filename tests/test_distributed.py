"""course_utils.distributed: batches split exactly, launches never hang, bytes per process add up."""

import json
import socket
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from course_utils.distributed import (
    SCRIPT,
    LaunchResult,
    check_backend,
    check_port_free,
    explain_failure,
    free_port,
    global_batch,
    held_bytes,
    launch_and_wait,
    max_rel_diff,
    pack_blocks,
    predicted_held_bytes,
    process_rank,
    rank_slice,
    run_launch,
    train_steps,
)
from course_utils.memory import TrainingRun

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=128, max_position_embeddings=64, tie_word_embeddings=True)


def tiny_lora(seed=0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(123)
    base = LlamaForCausalLM(LlamaConfig(**TINY))
    torch.manual_seed(seed)
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                           target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))


def test_pack_blocks_keeps_every_token_in_order_and_drops_only_the_tail():
    blocks = pack_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4)
    assert blocks.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    with pytest.raises(ValueError):
        pack_blocks([[1, 2]], 4)


def test_rank_slices_cover_the_global_batch_once():
    blocks = torch.arange(40).view(10, 4)
    batch = global_batch(blocks, step=2, size=4)  # rows 8, 9, then wraps to 0, 1
    assert batch[:, 0].tolist() == [32, 36, 0, 4]
    slices = [rank_slice(batch, r, 2) for r in range(2)]
    assert torch.equal(torch.cat(slices), batch)
    with pytest.raises(ValueError):
        rank_slice(batch, 0, 3)


def test_free_port_is_free_and_a_taken_port_is_named():
    port = free_port()
    check_port_free(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        with pytest.raises(RuntimeError, match=str(taken)):
            check_port_free(taken)


def test_backend_errors_say_what_to_do():
    check_backend("gloo")  # Linux CPU wheels have it
    with pytest.raises(RuntimeError, match="Windows or macOS"):
        check_backend("nccl", platform="darwin")
    with pytest.raises(ValueError):
        check_backend("mpi-please")


def test_launch_and_wait_adds_a_free_port_and_names_the_script_it_runs(tmp_path, capsys):
    script = tmp_path / "echo.py"
    script.write_text("import sys; print('[rank 0] args', *sys.argv[1:]); print('not a rank line')")
    result = launch_and_wait(f"accelerate launch --num_processes 1 --cpu {script} --mode ddp", timeout_s=120)
    assert result.ok, explain_failure(result)
    printed = capsys.readouterr().out
    ran = printed.splitlines()[0]
    assert ran.startswith("$ accelerate launch --main_process_port ") and ran.endswith(f"{script} --mode ddp")
    rank_line = next(line for line in result.lines if line.startswith("[rank 0]"))
    assert rank_line == "[rank 0] args --mode ddp" and rank_line in printed and "not a rank line" not in printed
    assert "not a rank line" in result.lines  # kept for explain_failure, not printed
    with pytest.raises(ValueError):
        launch_and_wait(f"torchrun {script}", timeout_s=5)


def test_run_launch_streams_lines_and_a_hung_launch_is_killed(capsys):
    code = "import time; print('[rank 0] up', flush=True); print('noise', flush=True); time.sleep(60)"
    result = run_launch([sys.executable, "-c", code], timeout_s=3, show=lambda line: line.startswith("[rank"))
    assert result.timed_out and not result.ok and result.seconds < 20
    assert result.lines[:2] == ["[rank 0] up", "noise"]
    printed = capsys.readouterr().out
    assert "[rank 0] up" in printed and "noise" not in printed
    assert "did not finish" in explain_failure(result)


def test_explain_failure_names_the_rank_from_the_elastic_report():
    report = ["Root Cause (first observed failure):", "[0]:", "  time      : 2026-01-01_00:00:00",
              "  rank      : 1 (local_rank: 1)", "  exitcode  : 1 (pid: 42)"]
    text = explain_failure(LaunchResult(1, 3.0, report))
    assert text.startswith("rank(s) 1 exited with an error")


def test_held_bytes_match_the_estimator_for_a_lora_model():
    model = tiny_lora()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    blocks = torch.randint(0, TINY["vocab_size"], (8, 8))
    train_steps(model, opt, blocks, steps=1, batch_size=4)
    held = held_bytes(model, opt)
    run = TrainingRun.lora(LlamaConfig(**TINY), 4, ["q_proj", "v_proj"])  # fp32 weights, AdamW
    predicted = predicted_held_bytes(run, 1, sharded=False)
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert held["grads"] == predicted["grads"] == n_lora * 4 and held["optimizer"] == n_lora * 8
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())  # the estimator counts them too
    assert held["params"] + buffers == predicted["params"]
    sharded = predicted_held_bytes(run, 4, sharded=True)
    assert sharded["total"] == pytest.approx(predicted["total"] / 4)


def test_process_rank_defaults_to_one_process_with_a_port():
    env = {}  # accelerate's simple launcher (one process) sets none of torchrun's variables
    assert process_rank(env) == (0, 1, 0)
    assert env["MASTER_ADDR"] == "127.0.0.1" and int(env["MASTER_PORT"]) > 0
    torchrun = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_PORT": "29500"}
    assert process_rank(torchrun) == (1, 2, 1) and torchrun["MASTER_PORT"] == "29500"


@pytest.fixture(scope="module")
def scale_out_run(tmp_path_factory):
    """Lesson 11's run config for a tiny Llama saved as a local checkpoint, and its in-kernel curve."""
    tmp = tmp_path_factory.mktemp("scale_out")
    torch.manual_seed(123)
    LlamaForCausalLM(LlamaConfig(**TINY)).save_pretrained(tmp / "tiny")
    torch.manual_seed(0)
    blocks = torch.randint(0, TINY["vocab_size"], (12, 8))
    torch.save(blocks, tmp / "blocks.pt")
    cfg = {"model_id": str(tmp / "tiny"), "dtype": "float32", "device": "cpu", "backend": "gloo",
           "lora_r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "seed": 0,
           "learning_rate": 1e-2, "steps": {"ddp": 3, "fsdp": 1}, "batch_size": 4, "probe_repeats": 1,
           "n_probe": 2,
           "collective_timeout_s": 60, "data_path": str(tmp / "blocks.pt")}
    from course_utils import load_model
    from course_utils.distributed import add_seeded_lora

    base = load_model(cfg["model_id"], dtype=torch.float32, device_map={"": "cpu"})
    model = add_seeded_lora(base, 4, 8, cfg["target_modules"], 0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg["learning_rate"])
    single, _ = train_steps(model, opt, blocks, steps=3, batch_size=4)
    return tmp, cfg, single


@pytest.mark.parametrize("n", [1, 2])
def test_scale_out_script_runs_on_one_and_two_processes(scale_out_run, n):
    """The notebook's own launch: one process (accelerate's simple launcher, no RANK) and two (DDP)."""
    tmp, cfg, single = scale_out_run
    cfg = {**cfg, "out_dir": str(tmp / f"n{n}")}
    config = tmp / f"run{n}.json"
    config.write_text(json.dumps(cfg))
    line = (f"accelerate launch --num_processes {n} {'--multi_gpu' if n > 1 else '--cpu'} {SCRIPT} "
            f"--config {config} --mode ddp")
    result = launch_and_wait(f"{line} --fail-rank 1", timeout_s=240)
    if n == 1:  # rank 1 does not exist: the run goes on, and says so
        assert result.ok, explain_failure(result)
        assert any("names no rank of 1" in line for line in result.lines), result.tail()
        (rank0,) = [json.loads((tmp / "n1" / "ddp" / "rank0.json").read_text())]
        assert rank0["world_size"] == 1 and rank0["launcher_env"]["MASTER_PORT"] is not None
        assert max_rel_diff(rank0["losses"], single) < 1e-5
        assert rank0["probe"]["agree_sync"] and rank0["probe"]["agree_no_sync"]  # one rank: nothing to differ
    else:  # rank 1 raises after joining; the launcher stops rank 0 and names rank 1
        assert not result.ok and not result.timed_out
        assert explain_failure(result).startswith("rank(s) 1 exited"), explain_failure(result)
        result = launch_and_wait(line, timeout_s=240)
        assert result.ok, explain_failure(result)
        ranks = [json.loads((tmp / "n2" / "ddp" / f"rank{r}.json").read_text()) for r in range(2)]
        assert [r["world_size"] for r in ranks] == [2, 2] and ranks[0]["losses"] == ranks[1]["losses"]
        assert max_rel_diff(ranks[0]["losses"], single) < 1e-5
        assert ranks[0]["probe"]["agree_sync"] and not ranks[0]["probe"]["agree_no_sync"]
