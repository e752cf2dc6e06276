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


def test_trainable_count_is_peft_s():
    """The bill's adapter size is what peft builds: counted by peft on one decoder layer, times 32."""
    import copy

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from course_utils.calculator import LLAMA_TARGETS
    from course_utils.memory import shipped_config

    config = copy.deepcopy(shipped_config("meta-llama/Llama-3.1-8B-Instruct"))
    layers, config.num_hidden_layers = config.num_hidden_layers, 1
    with torch.device("meta"):
        one_layer = get_peft_model(AutoModelForCausalLM.from_config(config),
                                   LoraConfig(r=16, target_modules=list(LLAMA_TARGETS)))
    trainable, _ = one_layer.get_nb_trainable_parameters()
    bill = memory_bill(precision="nf4", r=16, batch_size=2, seq_len=512)
    assert bill["trainable_params"] == layers * trainable == 41_943_040  # the figure peft prints for Llama-3-8B


def test_bill_parts_add_up_to_the_step_peak_not_to_their_sum():
    """Gradients, activations and logits are never all live: the bill's step peak, worked by hand.

    Llama-3.1-8B (h 4096, 32 layers, vocabulary 128,256), NF4 base with bf16 compute, batch 2 x 512 =
    1,024 tokens, checkpointing on. The peak is the end of the forward pass: each layer's bf16 input
    kept for recomputation, 32 x 1,024 x 4,096 x 2 B = 268,435,456 B, plus the logits and the loss
    over them, 1,024 x 128,256 x (2 bf16 + 4 fp32 copy + 4 log-softmax + 4 its gradient) B =
    1,838,678,016 B. Backward's moment (the same inputs, one recomputed layer, 41.9 M fp32 LoRA
    gradients = 167,772,160 B) stays below 1 GB.
    """
    bill = memory_bill(precision="nf4", batch_size=2, seq_len=512)
    parts = bill["parts"]
    assert parts["not_live_at_once"] < 0
    assert parts["gradients"] == 167_772_160 and parts["optimizer"] == 2 * 41_943_040  # 8-bit moments
    assert parts["logits"] == 1_838_678_016
    live = parts["gradients"] + parts["activations"] + parts["logits"] + parts["not_live_at_once"]
    assert live == 268_435_456 + 1_838_678_016


def test_fit_verdicts_are_the_budgets():
    """A bill fits a GPU exactly when its total is within that GPU's budget (T4 14, L4 21, A100 38 GB)."""
    budgets = {"t4": 14e9, "l4": 21e9, "a100": 38e9}
    seen = {gpu: set() for gpu in budgets}
    for batch_size in (1, 2, 4, 8, 16, 32):
        bill = memory_bill(precision="nf4", batch_size=batch_size, seq_len=1024)  # 11 to 76 GB
        for gpu, budget in budgets.items():
            assert bill["fits"][gpu] == (bill["total"] <= budget), (gpu, batch_size, bill["total"])
            seen[gpu].add(bill["fits"][gpu])
    assert all(v == {True, False} for v in seen.values()), seen  # the sweep crosses every budget
