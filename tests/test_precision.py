import pytest
import torch

from course_utils import PROFILES
from course_utils.precision import (
    assert_close_in,
    check_amp_ready,
    free_gpu_bytes_or_budget,
    torch_device,
    trainer_precision,
    ulp,
)


def test_trainer_precision_follows_recipe_and_hardware():
    assert trainer_precision(PROFILES["cpu"]) == {"fp16": False, "bf16": False, "use_cpu": True}
    assert trainer_precision(PROFILES["t4"]) == {"fp16": True, "bf16": False, "use_cpu": False}
    assert trainer_precision(PROFILES["t4-rehearsal"]) == {"fp16": True, "bf16": False, "use_cpu": True}
    assert trainer_precision(PROFILES["a100-rehearsal"]) == {"fp16": False, "bf16": True, "use_cpu": True}


def test_ulp_matches_torch_spacing():
    assert ulp(16.0, torch.bfloat16) == 0.125  # a bf16 ulp near 16
    assert ulp(1.0, torch.float16) == 2.0 ** -10
    x = torch.tensor(16.0, dtype=torch.bfloat16)
    assert float(torch.nextafter(x, torch.tensor(100.0, dtype=torch.bfloat16)) - x) == ulp(16.0, torch.bfloat16)


def test_assert_close_in_uses_the_dtype():
    ref = torch.full((4,), 16.0)
    off_by_one_bf16_ulp = ref + 0.125
    assert assert_close_in(off_by_one_bf16_ulp, ref, torch.bfloat16) == 0.125
    with pytest.raises(AssertionError, match="ulp"):
        assert_close_in(off_by_one_bf16_ulp, ref, torch.float32)
    with pytest.raises(AssertionError, match="shapes"):
        assert_close_in(ref[:2], ref, torch.float32)


def test_check_amp_ready_catches_fp16_trainables():
    layer = torch.nn.Linear(4, 4).half()
    with pytest.raises(RuntimeError, match="unscale FP16"):
        check_amp_ready(layer, PROFILES["t4-rehearsal"])
    assert check_amp_ready(layer.float(), PROFILES["t4-rehearsal"]) == 20
    assert check_amp_ready(layer.bfloat16(), PROFILES["a100-rehearsal"]) == 20  # bf16 needs no scaler
    layer.requires_grad_(False)
    with pytest.raises(RuntimeError, match="no trainable"):
        check_amp_ready(layer, PROFILES["cpu"])


def test_free_gpu_bytes_or_budget():
    assert free_gpu_bytes_or_budget(PROFILES["cpu"]) is None
    assert free_gpu_bytes_or_budget(PROFILES["t4-rehearsal"]) == 14_000_000_000


def test_torch_device_follows_hardware():
    assert torch_device(PROFILES["t4-rehearsal"]) == "cpu" and torch_device(PROFILES["cpu"]) == "cpu"
    assert torch_device(PROFILES["a100"]) == "cuda:0"


def _nf4_layer(weight, flag=None):
    import bitsandbytes as bnb

    layer = bnb.nn.Linear4bit(weight.shape[1], weight.shape[0], bias=False, compute_dtype=torch.float32,
                              quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False, quant_type="nf4")
    layer = layer.to("cpu")
    if flag is not None:
        layer.support_avx512bf16_for_cpu = flag
    return layer


def _grad_after_eval(layer, x):
    """Run the layer once as an evaluation would, then as training does; return the input's gradient."""
    layer.eval()
    with torch.no_grad():
        layer(x)
    layer.train()
    x = x.clone().requires_grad_()
    layer(x).sum().backward()
    return x.grad


def test_4bit_layers_pass_gradients_after_an_evaluation():
    """What QLoRA on a CPU needs: an eval pass must not cut the gradient through a frozen 4-bit layer."""
    import bitsandbytes.functional as F

    from course_utils.precision import keep_cpu_4bit_differentiable

    had_packed_path = keep_cpu_4bit_differentiable()
    torch.manual_seed(0)
    w, x = torch.randn(64, 128), torch.randn(3, 128)
    layer = _nf4_layer(w)  # built as load_model builds them, after the course's switch
    assert not layer.support_avx512bf16_for_cpu
    grad = _grad_after_eval(layer, x)
    dequantized = F.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    torch.testing.assert_close(grad, torch.ones(3, 64) @ dequantized)
    if had_packed_path:  # this CPU has bitsandbytes' packed bf16 path: show what it does without the switch
        assert _grad_after_eval(_nf4_layer(w, flag=True), x) is None


def test_check_finite_catches_a_real_fp16_overflow_and_says_what_to_do():
    """Logits past 65504 are inf in fp16 and make the loss NaN; the same weights in fp32 stay finite."""
    import torch.nn.functional as F

    from course_utils.precision import FP16_MAX, check_finite

    x = torch.full((2, 64), 100.0)  # activations of a bf16-trained model can be this large
    w = torch.full((8, 64), 20.0)
    logits16 = x.half() @ w.half().T  # 64 * 100 * 20 = 128,000 > 65,504: computed in fp16
    loss16 = F.cross_entropy(logits16.float(), torch.tensor([3, 5]))
    assert torch.isinf(logits16).all() and torch.isnan(loss16)  # the overflow is real, not planted
    with pytest.raises(FloatingPointError) as err:
        check_finite({"first logits": logits16, "first loss": loss16}, torch.float16, "Qwen/Qwen2.5-1.5B-Instruct",
                     remedy="Set dtype=torch.float32 in the Config cell.")
    message = str(err.value)
    assert "first logits: 16 of 16 values are inf or NaN" in message and "first loss: 1 of 1" in message
    assert "Set dtype=torch.float32" in message and "fp32" in message and "L4, A100" in message
    # The t4 recipe's remedy: the same numbers from fp32 weights are finite and the check returns them.
    logits32 = x @ w.T
    found = check_finite({"first logits": logits32, "losses": [1.5, 2.0]}, torch.float16)
    assert found == {"first logits": 128_000.0, "losses": 2.0} and found["first logits"] > FP16_MAX
    # A NaN loss in fp32 gets the advice that fits it (no fp16 to blame).
    empty = F.cross_entropy(logits32[:1], torch.tensor([-100]))  # no token carries loss: 0 / 0
    with pytest.raises(FloatingPointError, match="zero tokens"):
        check_finite({"loss": empty}, torch.float32)


def test_t4_recipe_keeps_the_persona_model_in_fp32_where_it_fits():
    from course_utils.machinery.loading import load_config
    from course_utils.memory import estimate_footprint

    t4, rehearsal = PROFILES["t4"], PROFILES["t4-rehearsal"]
    assert t4.weight_dtype("chinese_chat") == rehearsal.weight_dtype("chinese_chat") == torch.float32
    assert t4.weight_dtype("fused_qkv") == torch.float16 and PROFILES["a100"].weight_dtype("chinese_chat") == torch.bfloat16
    # What decides it: the fp32 weights of each model against the T4's budget (configs shipped, no download).
    for role, fits in (("chinese_chat", True), ("fused_qkv", False)):
        fp32 = estimate_footprint(load_config(t4.real_model_id(role)), None, torch.float32)["weights"]
        assert (fp32 < 0.5 * t4.gpu_memory_gb * 1e9) == fits, (role, fp32)
