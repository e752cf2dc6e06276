import pytest
import torch

from course_utils import PROFILES, get_profile
from course_utils.profiles import LOCAL_CHAT_MODEL, ROLES, detect_profile_name, with_overrides


def test_auto_detect_is_cpu_without_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert detect_profile_name() == "cpu"
    assert get_profile().name == "cpu"


def test_env_var_overrides_detection(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "CPU ")
    assert get_profile().name == "cpu"


def test_argument_beats_env(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "bogus")
    assert get_profile("cpu").name == "cpu"


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "h100")
    with pytest.raises(ValueError) as err:
        get_profile()
    for name in PROFILES:
        assert name in str(err.value)


def test_gpu_profile_without_gpu_says_what_to_do():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
        get_profile("t4")


def test_dtypes_follow_hardware_rules():
    assert PROFILES["cpu"].dtype is torch.float32
    assert PROFILES["t4"].dtype is torch.float16  # no bf16 before compute capability 8.0
    assert PROFILES["a100"].dtype is torch.bfloat16


def test_profiles_are_frozen():
    with pytest.raises(AttributeError):
        PROFILES["cpu"].max_steps = 1000
    changed = with_overrides(PROFILES["cpu"], max_steps=3)
    assert changed.max_steps == 3 and PROFILES["cpu"].max_steps != 3


def test_every_profile_names_every_role():
    for profile in PROFILES.values():
        assert set(profile.models) == set(ROLES)
    assert PROFILES["cpu"].model_id("chat") == LOCAL_CHAT_MODEL


def test_role_override_and_bad_role(monkeypatch):
    monkeypatch.setenv("COURSE_CHAT_MODEL", "Qwen/Qwen2.5-7B-Instruct")
    assert PROFILES["t4"].model_id("chat") == "Qwen/Qwen2.5-7B-Instruct"
    with pytest.raises(ValueError, match="roles are"):
        PROFILES["cpu"].model_id("vision")


def test_environment_report_prints_versions(capsys):
    from course_utils import environment_report

    info = environment_report(PROFILES["cpu"])
    out = capsys.readouterr().out
    assert "profile  cpu" in out and "transformers" in out and "bitsandbytes" in out
    assert info["versions"]["torch"] == torch.__version__.split("+")[0] or info["versions"]["torch"].startswith(
        torch.__version__.split("+")[0])
