"""The memory calculator, headless: its bill is the ledger's, and the fit verdicts follow the budgets."""
import torch

from course_utils.calculator import format_bill, memory_bill, memory_calculator


def test_qlora_8b_fits_a_t4_and_fp16_lora_does_not():
    qlora = memory_bill(precision="nf4", batch_size=1, seq_len=512)
    lora16 = memory_bill(precision="fp16", batch_size=1, seq_len=512, optim="adamw_torch")
    assert qlora["fits"]["t4"] and not lora16["fits"]["t4"]  # 16 GB of fp16 weights alone exceed 14 GB
    assert lora16["fits"]["a100"]
    assert lora16["parts"]["weights"] > 16e9 > qlora["total"]


def test_checkpointing_and_batch_move_the_bill():
    on = memory_bill(batch_size=8, seq_len=1024, gradient_checkpointing=True)
    off = memory_bill(batch_size=8, seq_len=1024, gradient_checkpointing=False)
    assert off["parts"]["activations"] > 10 * on["parts"]["activations"]
    assert on["fits"]["a100"] and not off["fits"]["a100"]
    assert "T4" in format_bill(on)


def test_widget_builds_headless(capsys):
    ui = memory_calculator()
    ui.update()  # run the callback once, as a slider change would
    assert "total" in capsys.readouterr().out


def test_bill_parts_add_up_to_the_step_peak_not_to_their_sum():
    """Gradients, activations and logits are never all live: the negative part takes the overlap away."""
    from course_utils.memory import step_peak_bytes

    bill = memory_bill(precision="nf4", batch_size=2, seq_len=512)
    parts = bill["parts"]
    assert parts["not_live_at_once"] < 0
    assert bill["total"] == sum(parts.values())
    live = parts["gradients"] + parts["activations"] + parts["logits"] + parts["not_live_at_once"]
    from course_utils.calculator import _real_meta

    real = _real_meta("meta-llama/Llama-3.1-8B-Instruct")
    assert abs(live - step_peak_bytes(real.config, bill["trainable_params"], 2, 512, True, torch.bfloat16)) < 1
