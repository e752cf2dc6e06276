"""The paged 8-bit AdamW survives a Trainer checkpoint: the resumed optimizer state is the saved one.

Notebook 07 trains with ``optim="paged_adamw_8bit"`` and resumes from a checkpoint (issue 19, item 6).
Here a tiny Llama with LoRA (sizes chosen so that bitsandbytes keeps some states in 8 bits and some in
fp32: it quantizes a state only for tensors of at least ``min_8bit_size`` = 4096 elements) trains 4
steps with a checkpoint every 2, then a second run resumes from step 2.

On CPU bitsandbytes 0.50 builds the same optimizer (``AdamW``, 8-bit blockwise states, ``is_paged``)
but allocates its states as ordinary tensors instead of CUDA unified memory ("Paged optimizers are not
supported on CPU"): what runs here is the 8-bit state and its save/restore through the Trainer, not
the paging itself.
"""

import warnings

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainerCallback, TrainingArguments

STEPS, SAVE_EVERY = 4, 2


def _model():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=256, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    # LoRA A of q/k is 16 x 256 = 4096 elements (8-bit state); B of k_proj is 128 x 16 (fp32 state)
    return get_peft_model(LlamaForCausalLM(config),
                          LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj"]))


def _data(n=16, seq=16):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (n, seq), generator=g)
    return [{"input_ids": row, "labels": row} for row in ids]


class _Snapshot(TrainerCallback):
    """Copy the state the optimizer will step with, as training begins after loading the checkpoint.

    The live ``optimizer.state`` (keyed by parameter, here renumbered in ``param_groups`` order as a
    saved state dict is), not ``state_dict()``: a state re-typed or dropped by ``load_state_dict``
    shows only there.
    """

    state = None

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper
        params = [p for g in inner.param_groups for p in g["params"]]
        self.state = {"state": {i: {n: v.clone() if torch.is_tensor(v) else v for n, v in inner.state[p].items()}
                                for i, p in enumerate(params) if p in inner.state},
                      "param_groups": [{**g, "params": list(range(len(g["params"])))} for g in inner.param_groups]}


def _load(path):
    """A saved optimizer state with bitsandbytes' quantization tensors unwrapped (it nests them for FSDP)."""
    sd = torch.load(path, weights_only=False)
    for s in sd["state"].values():
        s.update(s.pop("__bnb_optimizer_quant_state__", {}))
    return sd


def _trainer(out, callbacks=()):
    args = TrainingArguments(output_dir=str(out), max_steps=STEPS, save_steps=SAVE_EVERY, optim="paged_adamw_8bit",
                             per_device_train_batch_size=2, learning_rate=1e-2, lr_scheduler_type="constant",
                             logging_steps=1, report_to=[], seed=0, data_seed=0, use_cpu=True,
                             dataloader_num_workers=0, disable_tqdm=True)
    return Trainer(model=_model(), args=args, train_dataset=_data(), callbacks=list(callbacks))


def _assert_same_state(got, want, what):
    assert got["state"].keys() == want["state"].keys(), what
    for key, saved in want["state"].items():
        restored = got["state"][key]
        assert restored.keys() == saved.keys(), (what, key)
        for name, v in saved.items():
            r = restored[name]
            if torch.is_tensor(v):
                assert r.dtype == v.dtype and r.shape == v.shape, (what, key, name, r.dtype, v.dtype)
                assert torch.equal(r.cpu(), v.cpu()), (what, key, name)
            else:
                assert r == v, (what, key, name, r, v)  # the step count
    for g, w in zip(got["param_groups"], want["param_groups"], strict=True):
        assert {k: g[k] for k in ("lr", "betas", "eps", "weight_decay", "params")} \
            == {k: w[k] for k in ("lr", "betas", "eps", "weight_decay", "params")}, what


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import bitsandbytes as bnb

    root = tmp_path_factory.mktemp("paged")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU")
        straight = _trainer(root / "straight")
        straight.train()
        inner = straight.optimizer.optimizer if hasattr(straight.optimizer, "optimizer") else straight.optimizer
        assert isinstance(inner, bnb.optim.AdamW) and inner.is_paged and inner.args.optim_bits == 8, inner
        snapshot = _Snapshot()
        resumed = _trainer(root / "resumed", [snapshot])
        resumed.train(resume_from_checkpoint=str(root / "straight" / f"checkpoint-{SAVE_EVERY}"))
    return root, snapshot


def test_checkpoint_holds_8bit_and_fp32_states(runs):
    root, _ = runs
    saved = _load(root / "straight" / f"checkpoint-{SAVE_EVERY}" / "optimizer.pt")
    kinds = {s["state1"].dtype for s in saved["state"].values()}
    assert kinds == {torch.uint8, torch.float32}, kinds  # both of bitsandbytes' state formats are covered
    for s in saved["state"].values():
        assert s["step"] == SAVE_EVERY  # bitsandbytes counts steps per parameter
        if s["state1"].dtype == torch.uint8:
            assert s["state2"].dtype == torch.uint8 and s["absmax1"].dtype == torch.float32
            assert s["absmax1"].abs().sum() > 0  # a trained moment, not the zeros of a fresh state


def test_resumed_optimizer_state_equals_the_saved_one(runs):
    root, snapshot = runs
    saved = _load(root / "straight" / f"checkpoint-{SAVE_EVERY}" / "optimizer.pt")
    assert snapshot.state is not None
    _assert_same_state(snapshot.state, saved, "restored at step 2")


def test_resumed_run_ends_where_the_uninterrupted_one_does(runs):
    """A lost or re-typed moment would change the last two steps: compare the step-4 checkpoints."""
    root, _ = runs
    straight = _load(root / "straight" / f"checkpoint-{STEPS}" / "optimizer.pt")
    resumed = _load(root / "resumed" / f"checkpoint-{STEPS}" / "optimizer.pt")
    _assert_same_state(resumed, straight, "step 4")
    from safetensors.torch import load_file

    a = load_file(root / "straight" / f"checkpoint-{STEPS}" / "adapter_model.safetensors")
    b = load_file(root / "resumed" / f"checkpoint-{STEPS}" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
