"""ECG-CPC (conv encoder + causal S4): parity with goldens made by the original code, the
published key layout, safe reading of Lightning checkpoints, conversion, heads, stochastic depth.

The fixtures live in ../shared/reference (override: ECGFOUNDRY_REFERENCE, or ECGFOUNDRY_SHARED
for the shared folder). Without them the parity tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import ast
import io
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
from conftest import require_reference
from safetensors.torch import load_file
from test_cli import ecgfoundry

from ecgfoundry.models import CheckpointError, UnsafeCheckpointError, create_model
from ecgfoundry.models.io import (
    StandIn,
    load_restricted_checkpoint,
    load_state_dict_strict,
    plain_config,
    restricted_unpickler,
)
from ecgfoundry.models.registry import count_parameters, load_model, save_model
from ecgfoundry.models.s4 import (
    ECGCPC_SPEC,
    S4Config,
    S4Model,
    convert_checkpoint,
    map_original_key,
    original_key,
)
from ecgfoundry.nn.layers import drop_path_rates
from ecgfoundry.nn.s4 import S4Kernel, as_complex, full_state_matrix

TOLERANCE = 1e-4
CONFIG_PACKAGES = ("omegaconf", "clinical_ts", "typing")


@pytest.fixture(scope="module")
def reference() -> Path:
    return require_reference("ecgcpc_A.ckpt", "ecgcpc_A_golden.safetensors", "keys_ecgcpc.txt")


@pytest.fixture(scope="module")
def golden(reference: Path) -> dict[str, torch.Tensor]:
    return load_file(str(reference / "ecgcpc_A_golden.safetensors"))


@pytest.fixture(scope="module")
def model_a(reference: Path) -> S4Model:
    return convert_checkpoint(reference / "ecgcpc_A.ckpt")


@pytest.fixture(scope="module")
def original_state(reference: Path) -> dict[str, torch.Tensor]:
    checkpoint = load_restricted_checkpoint(
        reference / "ecgcpc_A.ckpt", stand_in_modules=CONFIG_PACKAGES
    )
    return dict(checkpoint["state_dict"])


def _tiny(**overrides) -> S4Model:
    torch.manual_seed(0)
    return create_model("s4-tiny", **overrides).eval()


def _fine_tuned(original_state, golden, head: str, path: Path) -> Path:
    """A main_lite-style checkpoint: the body under model.model., the golden head under
    model.head. (linear) or model.head.head. (attention pooling)."""
    prefix = {"linear": "model.head.", "attnpool": "model.head.head."}[head]
    state = {f"model.model.{k}": v for k, v in original_state.items()}
    for key, value in golden.items():
        if key.startswith(f"head_{head}."):
            state[prefix + key.split(".", 1)[1]] = value
    torch.save({"state_dict": state}, path)
    return path


# -- parity with the original ------------------------------------------------------------------


def test_set_a_reproduces_the_goldens(model_a, golden, record_property):
    x = golden["x"]
    with torch.no_grad():
        tokens = model_a.forward_tokens(x)
        first = model_a.layers[0]
        got = {
            "encoder_out": tokens,
            "s4.layer0.kernel": first.s4.kernel(x.shape[-1] // 2),
            "s4.layer1.kernel": model_a.layers[1].s4.kernel(x.shape[-1] // 2),
            "s4.layer0.block_out": first.s4(tokens.transpose(1, 2)),
            "s4.layer0.out": first(tokens.transpose(1, 2)).transpose(1, 2),
            "s4_out": model_a.forward_sequence(x),
            "pooled_mean": model_a.forward_features(x),
        }
    for name, value in got.items():
        error = (value - golden[name]).abs().max().item()
        record_property(f"max_abs_err_{name}", error)
        print(f"{name}: max abs error {error:.3g}")
        assert value.shape == golden[name].shape and error <= TOLERANCE, name
    assert not model_a.training and model_a.num_classes == 0
    assert model_a.config.kernel_length == 1200 and model_a.config.d_model == 32
    assert model_a.config.spec == ECGCPC_SPEC and model_a.config.ssl_head


@pytest.mark.parametrize("head", ["linear", "attnpool"])
def test_fine_tuned_checkpoint_with_either_head(original_state, golden, head, tmp_path):
    model = convert_checkpoint(_fine_tuned(original_state, golden, head, tmp_path / "ft.ckpt"))
    with torch.no_grad():
        logits = model(golden["x"])
    error = (logits - golden[f"logits_{head}"]).abs().max().item()
    print(f"logits_{head}: max abs error {error:.3g}")
    assert error <= TOLERANCE and model.num_classes == 5
    assert model.config.pooling == ("attention" if head == "attnpool" else "mean")
    assert (model.head.bias is None) == (head == "attnpool")  # c_proj has no bias


def test_kernel_is_the_ssm_impulse_response_also_beyond_its_length():
    torch.manual_seed(1)
    kernel = S4Kernel(channels=3, state=8, length=64, dt_min=0.01)
    w, p, q, b, c = (as_complex(t).to(torch.complex128) for t in (kernel.w, kernel.P[0],
                     kernel.Q[0], kernel.B[0], kernel.C[0]))  # fmt: skip
    dt = kernel.log_dt.double().exp()[:, None, None]
    eye = torch.eye(8, dtype=torch.complex128)
    a = full_state_matrix(w, p, q)
    a_bar = torch.linalg.solve(eye - dt / 2 * a, eye + dt / 2 * a)
    x = torch.linalg.solve(eye - dt / 2 * a, dt * torch.cat([b, b.conj()], -1)[..., None])
    corrected = (eye - torch.linalg.matrix_power(a_bar, 64)).transpose(1, 2)
    c_true = torch.linalg.solve(corrected, torch.cat([c, c.conj()], -1)[..., None])[..., 0]
    taps = []
    for _ in range(150):  # K_j = C Ā^j B̄, with C = C̃ (I - Ā^Lk)^-1
        taps.append((c_true * x[..., 0]).sum(-1).real)
        x = a_bar @ x
    with torch.no_grad():
        assert (kernel(150).double() - torch.stack(taps, -1)).abs().max() < 1e-5
        assert torch.equal(kernel(40), kernel(64)[:, :40])


# -- published layout --------------------------------------------------------------------------


def test_published_size_has_the_original_keys_and_parameter_count(reference):
    expected = {}
    for line in (reference / "keys_ecgcpc.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            expected[key] = (ast.literal_eval(shape), dtype)
    with torch.device("meta"):
        model = create_model("ecg-cpc")
        backbone = create_model("ecg-cpc", ssl_head=False)
    got = {original_key(k): (list(v.shape), str(v.dtype).removeprefix("torch."))
           for k, v in model.state_dict().items()}  # fmt: skip
    assert got == expected
    assert all(map_original_key(original_key(k)) == k for k in model.state_dict())
    assert count_parameters(model) == 3_194_880 and count_parameters(backbone) == 2_932_736
    trainable = {k for k, _ in model.named_parameters() if ".s4.kernel." in k}
    assert trainable == {f"layers.{i}.s4.kernel.C" for i in range(4)}
    assert model.spec.samples == 2400 and model.spec.normalisation == "none"


def test_presets():
    for name, fs in (("ecg-cpc", 240), ("s4-small", 100), ("s4-tiny", 100)):
        with torch.device("meta"):
            model = create_model(name)
        assert model.family == "s4" and model.spec.fs == fs
        tokens = model.config.tokens(model.spec.samples)
        assert model.config.kernel_length == tokens


# -- safe reading ------------------------------------------------------------------------------


def test_lightning_checkpoint_loads_with_inert_stand_ins(reference):
    checkpoint = load_restricted_checkpoint(
        reference / "ecgcpc_A.ckpt", stand_in_modules=CONFIG_PACKAGES
    )
    hparams = checkpoint["hyper_parameters"]
    assert isinstance(hparams, StandIn)
    assert type(hparams).__module__ == "omegaconf.dictconfig"
    assert "omegaconf" not in sys.modules and "clinical_ts" not in sys.modules
    plain = plain_config(hparams)
    assert plain["ts"]["pred"]["model_dim"] == 32 and plain["ts"]["enc"]["kss"] == [3, 1, 1, 1]
    assert plain["base"]["fs"] == 240.0 and len(checkpoint["state_dict"]) == 51


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("zipped", [True, False])
def test_restricted_unpickler_refuses_other_globals(tmp_path, zipped):
    exploit = _Exploit()
    exploit.marker = tmp_path / "ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": exploit}, path, _use_new_zipfile_serialization=zipped)
    for allow_unsafe in (False, True):
        with pytest.raises(UnsafeCheckpointError, match=r"evil.ckpt: refers to \w+\.system"):
            convert_checkpoint(path, allow_unsafe=allow_unsafe)
    with pytest.raises(UnsafeCheckpointError, match="nothing from the file was run"):
        load_restricted_checkpoint(path, stand_in_modules=CONFIG_PACKAGES)
    assert not exploit.marker.exists()
    path.write_bytes(pickle.dumps({"state_dict": {}}) + b"garbage")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_restricted_checkpoint(path, stand_in_modules=CONFIG_PACKAGES)


def test_restricted_unpickler_cannot_change_the_functions_it_allows():
    # GLOBAL torch._utils._rebuild_tensor_v2, then BUILD with {"__defaults__": (1,)} as slot state
    data = (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"
        b"N}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b."
    )
    before = torch._utils._rebuild_tensor_v2.__defaults__
    with pytest.raises(AttributeError):
        restricted_unpickler(CONFIG_PACKAGES).load(io.BytesIO(data))
    assert torch._utils._rebuild_tensor_v2.__defaults__ == before


# -- conversion --------------------------------------------------------------------------------


def test_stale_pickled_encoder_config_falls_back_to_published_strides(original_state, tmp_path):
    stale = {"ts": {"enc": {"kss": [1, 1, 1, 1], "strides": [1, 1, 1, 1]}}}
    torch.save({"state_dict": original_state, "hyper_parameters": stale}, tmp_path / "s.ckpt")
    with pytest.warns(UserWarning, match=r"using the published strides \[2, 1, 1, 1\]"):
        model = convert_checkpoint(tmp_path / "s.ckpt")
    assert model.config.encoder_strides == [2, 1, 1, 1]
    assert model.config.encoder_kernel_sizes == [3, 1, 1, 1]


def test_mismatched_tensors_are_listed(original_state, tmp_path):
    state = dict(original_state)
    del state["ts_encoder.predictor.predictor.norms.1.bias"]
    state["ts_encoder.extra.weight"] = torch.zeros(2)
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    listed = r"1 missing: layers\.1\.norm\.bias; 1 unexpected: ts_encoder\.extra\.weight"
    with pytest.raises(CheckpointError, match=listed):
        convert_checkpoint(tmp_path / "bad.ckpt")
    with pytest.raises(ValueError, match=r"unknown S4 override\(s\) \['width'\]"):
        convert_checkpoint(tmp_path / "bad.ckpt", overrides={"width": 3})


def test_save_and_load_round_trip(model_a, golden, tmp_path):
    loaded = load_model(save_model(model_a, tmp_path / "ecgcpc_A"))
    assert isinstance(loaded, S4Model) and loaded.config == model_a.config
    with torch.no_grad():
        features = loaded.forward_features(golden["x"])
        assert torch.equal(features, model_a.forward_features(golden["x"]))
    assert torch.equal(loaded.ssl_head.weight, model_a.ssl_head.weight)


def test_cli_convert(reference, golden, tmp_path):
    out = tmp_path / "ecgcpc-a"
    result = ecgfoundry("convert", "ecgcpc", reference / "ecgcpc_A.ckpt", "--out", out)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == out
    with torch.no_grad():
        features = load_model(out).forward_features(golden["x"])
    assert (features - golden["pooled_mean"]).abs().max() <= TOLERANCE


# -- the model ---------------------------------------------------------------------------------


def test_heads_and_shapes():
    x = torch.randn(2, 12, 999)
    model = _tiny(num_classes=3)
    assert model.forward_sequence(x).shape == (2, 500, 32)
    assert model.forward_tokens(x).shape == (2, 500, 32)
    assert model.forward_features(x).shape == (2, 32) and model(x).shape == (2, 3)
    assert model.head.bias is not None and model.pool is None
    attention = _tiny(num_classes=3, pooling="attention")
    assert attention(x).shape == (2, 3) and attention.head.bias is None
    assert {k for k in attention.state_dict() if k.startswith("pool.")} == {
        "pool.query", "pool.q_proj.weight", "pool.k_proj.weight", "pool.v_proj.weight"
    }  # fmt: skip
    attention.reset_head(None)
    assert attention(x).shape == (2, 32)
    longer = model.forward_sequence(torch.randn(1, 12, 2 * model.spec.samples))
    assert longer.shape == (1, 1000, 32)  # beyond the kernel length
    with pytest.raises(ValueError, match=r"S4Model expects \[batch, 12 leads, samples\]"):
        model(torch.randn(2, 3, 100))
    with pytest.raises(ValueError, match="attention_heads 5 must divide d_model 32"):
        S4Config(pooling="attention", attention_heads=5, d_model=32)
    with pytest.raises(ValueError, match="give a spec naming the leads"):
        S4Config(in_channels=2)


def test_drop_path_only_in_training():
    x = torch.randn(4, 12, 400)
    model = _tiny(dropout=0.0, num_classes=2)
    reference = model(x)
    model.set_drop_path_rate(0.5)
    assert [m.p for m in model.drop_path_modules()] == pytest.approx(drop_path_rates(0.5, 2))
    assert torch.equal(model(x), reference)  # eval: identity
    model.train()
    torch.manual_seed(3)
    first = model(x)
    torch.manual_seed(4)
    assert not torch.allclose(model(x), first)
    model.set_drop_path_rate(0.0)
    torch.manual_seed(5)
    plain = model(x)
    assert torch.equal(model(x), plain)  # no randomness left without drop path / dropout


def test_training_step_updates_only_trainable_tensors():
    model = _tiny(num_classes=2).train()
    buffers = {k: v.clone() for k, v in model.named_buffers() if ".s4.kernel." in k}
    model(torch.randn(2, 12, 200)).sum().backward()
    assert model.layers[0].s4.kernel.C.grad.abs().sum() > 0
    assert model.ssl_head.weight.grad is None and model.has_unused_parameters
    assert all(torch.equal(v, dict(model.named_buffers())[k]) for k, v in buffers.items())
    strict = _tiny(num_classes=2)
    load_state_dict_strict(strict, model.state_dict(), "trained")
