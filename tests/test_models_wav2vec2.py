"""ECG-FM (fairseq-signals wav2vec 2.0): parity with the original code's golden outputs, the key map
at the published size, conversion errors, stochastic depth and the head."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import require_reference
from safetensors.torch import load_file

from ecgfoundry.models import CheckpointError, count_parameters, create_model, load_model
from ecgfoundry.models import wav2vec2 as w2v
from ecgfoundry.models.io import save_model
from ecgfoundry.nn.layers import DropPath

ATOL = 1e-4
BASE_ENCODER_PARAMS = 90_373_248
BASE_CLASSIFIER_PARAMS = 90_386_321


def reference(name: str) -> Path:
    return require_reference(name) / name


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(reference("ecgfm_tiny_golden.safetensors")))


def read_keys(name: str) -> dict[str, tuple[int, ...]]:
    """``key<TAB>[shape]<TAB>dtype`` lines of a reference key list."""
    keys = {}
    for line in reference(name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _dtype = line.split("\t")
        keys[key] = tuple(int(v) for v in shape.strip("[]").split(",") if v.strip())
    return keys


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# -- parity with the original implementation ---------------------------------------------------
@pytest.mark.parametrize("checkpoint", ["ecgfm_tiny.pt", "ecgfm_tiny_newwn.pt"])
def test_pretrained_parity(checkpoint: str, golden: dict[str, torch.Tensor]) -> None:
    model = w2v.convert_checkpoint(reference(checkpoint))
    assert not model.training and model.num_classes == 0
    x = golden["x"]
    with torch.no_grad():
        local = model.local_features(x)
        outputs = {
            "conv_features": model.feature_extractor(x),
            "layer_norm_features": local,
            "encoder_input": model.conv_pos(model.project_features(local)),
            "last_hidden_state": model.forward_sequence(x),
            "pooled": model.forward_features(x),
        }
    errors = {name: max_err(value, golden[name]) for name, value in outputs.items()}
    print(checkpoint, errors)  # recorded: <= 1.2e-6 with torch 2.13 CPU
    assert all(err <= ATOL for err in errors.values()), errors
    with torch.no_grad():
        assert torch.equal(model(x), outputs["pooled"])  # no head: forward is the embedding


def test_finetuned_parity_and_round_trip(golden: dict[str, torch.Tensor], tmp_path: Path) -> None:
    model = w2v.convert_checkpoint(reference("ecgfm_tiny_finetuned.pt"))
    assert model.num_classes == 5 and model.config.feature_grad_mult == 0.0
    with torch.no_grad():
        logits = model(golden["x"])
    err = max_err(logits, golden["finetuned_logits"])
    print("finetuned_logits", err)
    assert err <= ATOL

    folder = save_model(model, tmp_path / "ecgfm")
    loaded = load_model(folder)
    assert type(loaded) is w2v.Wav2Vec2ECG and loaded.config == model.config
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(loaded(golden["x"]), logits)


def test_convert_overrides() -> None:
    path = reference("ecgfm_tiny_finetuned.pt")
    labels = [f"c{i}" for i in range(5)]
    named = w2v.convert_checkpoint(path, overrides={"labels": labels, "drop_path_rate": 0.1})
    assert named.config.labels == labels and named.config.drop_path_rate == 0.1
    fresh = w2v.convert_checkpoint(path, overrides={"num_classes": 3})
    assert fresh.head.out_features == 3
    plain = w2v.convert_checkpoint(reference("ecgfm_tiny.pt"), overrides={"dropout": 0.2})
    assert plain.config.dropout == 0.2 and plain.config.encoder_layers == 2
    with pytest.raises(CheckpointError, match="shape"):
        w2v.convert_checkpoint(reference("ecgfm_tiny.pt"), overrides={"encoder_ffn_embed_dim": 96})


# -- key map and sizes at the published size ----------------------------------------------------
def test_base_keys_and_parameter_counts() -> None:
    with torch.device("meta"):
        encoder = create_model("ecgfm-base")
        classifier = create_model("ecgfm-base", num_classes=17)
    assert count_parameters(encoder) == BASE_ENCODER_PARAMS
    assert count_parameters(classifier) == BASE_CLASSIFIER_PARAMS

    expected = read_keys("keys_ecgfm_base_pretrained.txt")
    ours = {k: tuple(v.shape) for k, v in w2v.ecgfoundry_to_fairseq(encoder.state_dict()).items()}
    pretraining = {k: s for k, s in expected.items() if w2v.is_pretraining_key(k)}
    assert sorted(pretraining) == sorted(
        ["mask_emb", "quantizer.vars", "quantizer.weight_proj.weight",
         "quantizer.weight_proj.bias", "project_q.weight", "project_q.bias", "final_proj.weight",
         "final_proj.bias"]
    )  # fmt: skip
    assert ours | pretraining == expected
    assert not set(ours) & set(pretraining)

    expected = read_keys("keys_ecgfm_base_finetuned.txt")
    state = w2v.ecgfoundry_to_fairseq(classifier.state_dict(), classifier=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_key_map_round_trip() -> None:
    model = create_model("ecgfm-tiny", num_classes=3)
    state = model.state_dict()
    for classifier in (False, True):
        fairseq = w2v.ecgfoundry_to_fairseq(state, classifier=classifier)
        assert ("proj.weight" in fairseq) and (
            classifier == ("encoder.feature_extractor.conv_layers.0.0.weight" in fairseq)
        )
        back, ignored = w2v.fairseq_to_ecgfoundry(fairseq)
        assert not ignored and back.keys() == state.keys()
        assert all(torch.equal(back[k], v) for k, v in state.items())


# -- errors ---------------------------------------------------------------------------------------
def save_variant(tmp_path: Path, change) -> Path:
    checkpoint = torch.load(reference("ecgfm_tiny.pt"), weights_only=True)
    change(checkpoint)
    path = tmp_path / "variant.pt"
    torch.save(checkpoint, path)
    return path


def test_mismatched_checkpoints_list_keys(tmp_path: Path) -> None:
    def drop_and_add(ckpt: dict) -> None:
        del ckpt["model"]["encoder.layers.1.fc1.bias"]
        ckpt["model"]["encoder.extra.weight"] = torch.zeros(2)

    with pytest.raises(CheckpointError) as info:
        w2v.convert_checkpoint(save_variant(tmp_path, drop_and_add))
    message = str(info.value)
    assert "encoder.layers.1.fc1.bias" in message and "encoder.extra.weight" in message

    def drop_k(ckpt: dict) -> None:
        del ckpt["model"]["encoder.layers.0.self_attn.k_proj.weight"]

    with pytest.raises(CheckpointError) as info:
        w2v.convert_checkpoint(save_variant(tmp_path, drop_k))
    assert "qkv_proj.weight" in str(info.value) and "q_proj.weight" in str(info.value)

    def bigger_model(ckpt: dict) -> None:
        ckpt["cfg"]["model"]["encoder_layers"] = 3

    with pytest.raises(CheckpointError, match=r"missing: encoder\.layers\.2\."):
        w2v.convert_checkpoint(save_variant(tmp_path, bigger_model))

    def no_cfg(ckpt: dict) -> None:
        del ckpt["cfg"]

    with pytest.raises(CheckpointError, match="cfg"):
        w2v.convert_checkpoint(save_variant(tmp_path, no_cfg))


def test_conv_feature_layers_parsing(tmp_path: Path) -> None:
    assert w2v.parse_conv_layers("[(256, 2, 2)] * 4") == [(256, 2, 2)] * 4
    assert w2v.parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 2 + 1 * [(64, 2, 2)]") == [
        (512, 10, 5), (512, 3, 2), (512, 3, 2), (64, 2, 2)
    ]  # fmt: skip
    assert w2v.parse_conv_layers([[8, 2, 2]]) == [(8, 2, 2)]
    assert w2v.format_conv_layers([(256, 2, 2)] * 4) == "[(256, 2, 2)] * 4"
    marker = tmp_path / "evaluated"
    bad = [
        f"__import__('pathlib').Path({str(marker)!r}).touch()",
        "[(256, 2, 2)] * 10**9",
        "[(256, 2, 2)] * 100",
        "[(256, 2)] * 4",
        "[(256, 2.0, 2)]",
        "[(True, 2, 2)]",
        "[(256, -2, 2)]",
        "[x for x in ()]",
        "[]",
        "[(256, 2, 2)",
    ]
    for text in bad:
        with pytest.raises(ValueError, match="conv_feature_layers"):
            w2v.parse_conv_layers(text)
    assert not marker.exists()

    def evil(ckpt: dict) -> None:
        ckpt["cfg"]["model"]["conv_feature_layers"] = bad[0]

    with pytest.raises(CheckpointError, match="conv_feature_layers"):
        w2v.convert_checkpoint(save_variant(tmp_path, evil))
    assert not marker.exists()


# -- stochastic depth, head, shapes ---------------------------------------------------------------
def test_drop_path() -> None:
    model = create_model("ecgfm-tiny", drop_path_rate=0.2, encoder_layers=3)
    modules = model.drop_path_modules()
    assert len(modules) == 6  # attention and feed-forward branch of each layer, in depth order
    layers = model.encoder.layers
    assert modules == [m for layer in layers for m in (layer.drop_path_attn, layer.drop_path_ffn)]
    assert [m.p for m in modules] == pytest.approx([0.2 * i / 5 for i in range(6)])
    built = w2v.Wav2Vec2ECG(w2v.Wav2Vec2Config(drop_path_rate=0.2, **tiny_fields(3)))
    assert [m.p for m in built.drop_path_modules()] == pytest.approx([m.p for m in modules])

    x = torch.randn(4, 12, 2500)
    model.eval()
    with torch.no_grad():
        reference_out = model.forward_features(x)
        model.set_drop_path_rate(0.5)
        assert torch.equal(model.forward_features(x), reference_out)  # identity at eval
        model.train()
        for layer in model.modules():  # keep only stochastic depth random
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
        torch.manual_seed(0)
        trained = model.forward_features(x)
    assert not torch.allclose(trained, reference_out)
    block = DropPath(0.5).train()
    torch.manual_seed(0)
    out = block(torch.ones(64, 3))
    assert set(out[:, 0].tolist()) == {0.0, 2.0} and torch.equal(out[:, 0:1].expand(-1, 3), out)


def tiny_fields(layers: int = 2) -> dict:
    return {
        "conv_feature_layers": "[(32, 2, 2)] * 4",
        "encoder_layers": layers,
        "encoder_embed_dim": 64,
        "encoder_ffn_embed_dim": 128,
        "encoder_attention_heads": 4,
        "conv_pos": 16,
    }


def test_head_shapes_and_training_step() -> None:
    model = create_model("ecgfm-tiny", num_classes=4)
    x = torch.randn(3, 12, 2500)
    assert model.num_features == 64 and model.output_length(2500) == 156
    assert model.forward_sequence(x).shape == (3, 156, 64)
    assert model.forward_features(x).shape == (3, 64)
    assert model(x).shape == (3, 4)
    model.reset_head(2, ["a", "b"])
    assert model(x).shape == (3, 2) and model.config.labels == ["a", "b"]
    model.reset_head(0)
    assert isinstance(model.head, torch.nn.Identity) and model(x).shape == (3, 64)

    model = create_model("ecgfm-tiny", num_classes=2, feature_grad_mult=0.1).train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    frozen = create_model("ecgfm-tiny", num_classes=2, feature_grad_mult=0.0).train()
    frozen(x).sum().backward()
    assert all(p.grad is None for p in frozen.feature_extractor.parameters())
    assert frozen.head.weight.grad is not None


def test_presets_and_config() -> None:
    with torch.device("meta"):
        small = create_model("ecgfm-small")
        tiny = create_model("ecgfm-tiny")
    assert 2e6 <= count_parameters(small) <= 6e6
    assert count_parameters(tiny) == 80_400  # ecgfm_tiny.pt minus its pretraining entries
    spec = small.spec
    assert (spec.fs, spec.seconds, spec.samples, spec.normalisation) == (500, 5, 2500, "zscore")
    assert spec.leads[:3] == ("I", "II", "III") and len(spec.leads) == 12
    assert w2v.Wav2Vec2ECG.family == "ecgfm"
    config = w2v.Wav2Vec2Config.from_dict(w2v.Wav2Vec2Config().to_dict())
    assert config == w2v.Wav2Vec2Config()
    with pytest.raises(ValueError, match="divisible"):
        w2v.Wav2Vec2Config(encoder_attention_heads=5)
    with pytest.raises(ValueError, match="leads"):
        w2v.Wav2Vec2Config(in_d=1)


def test_bfloat16_autocast_runs() -> None:
    model = create_model("ecgfm-tiny").eval()
    x = torch.randn(2, 12, 2500)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_features(x)
    assert out.shape == (2, 64) and torch.isfinite(out.float()).all()
    with torch.no_grad():
        assert torch.allclose(out.float(), model.forward_features(x), atol=0.1)


# -- variants the ECG-FM fixtures do not cover: same maths as transformers' Wav2Vec2Model --------
HF_RENAMES = (
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^encoder\.pos_conv_embed\.conv\.(weight_g|parametrizations\.weight\.original0)$",
     "conv_pos.conv.weight_g"),
    (r"^encoder\.pos_conv_embed\.conv\.(weight_v|parametrizations\.weight\.original1)$",
     "conv_pos.conv.weight_v"),
    (r"^encoder\.pos_conv_embed\.conv\.bias$", "conv_pos.conv.bias"),
    (r"\.attention\.out_proj\.", ".self_attn.out_proj."),
    (r"^(encoder\.layers\.\d+)\.layer_norm\.", r"\1.self_attn_layer_norm."),
    (r"\.feed_forward\.intermediate_dense\.", ".fc1."),
    (r"\.feed_forward\.output_dense\.", ".fc2."),
)  # fmt: skip


@pytest.mark.parametrize(
    ("layer_norm_first", "extractor_mode"),
    [(False, "default"), (True, "layer_norm"), (False, "layer_norm")],
)
def test_matches_transformers_wav2vec2(layer_norm_first: bool, extractor_mode: str) -> None:
    """``layer_norm_first`` and the "layer_norm" extractor (not in the fixtures) against
    transformers' Wav2Vec2Model, which implements the same architecture variants."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.Wav2Vec2Model(
        transformers.Wav2Vec2Config(
            conv_dim=(32, 32, 32),
            conv_kernel=(3, 2, 2),
            conv_stride=(2, 2, 2),
            conv_bias=True,
            feat_extract_norm="layer" if extractor_mode == "layer_norm" else "group",
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=128,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=16,
            layer_norm_eps=1e-5,
            do_stable_layer_norm=layer_norm_first,
        )
    ).eval()
    with torch.no_grad():
        for parameter in hf.parameters():  # no trivial norms or zero biases
            parameter.add_(0.1 * torch.randn_like(parameter))
    state = {}
    for key, value in hf.state_dict().items():
        for pattern, target in HF_RENAMES:
            key = re.sub(pattern, target, key)
        if extractor_mode == "default":
            key = key.replace("conv_layers.0.layer_norm.", "conv_layers.0.group_norm.")
        state[key] = value
    state.pop("masked_spec_embed", None)
    for i in range(2):
        for kind in ("weight", "bias"):
            parts = [state.pop(f"encoder.layers.{i}.attention.{p}_proj.{kind}") for p in "qkv"]
            state[f"encoder.layers.{i}.self_attn.qkv_proj.{kind}"] = torch.cat(parts)
    fields = tiny_fields(2) | {"conv_feature_layers": "[(32, 3, 2)] + [(32, 2, 2)] * 2"}
    model = w2v.Wav2Vec2ECG(
        w2v.Wav2Vec2Config(
            **fields,
            in_d=1,
            conv_bias=True,
            extractor_mode=extractor_mode,
            layer_norm_first=layer_norm_first,
            spec={"fs": 500.0, "seconds": 2.0, "leads": ["II"]},
        )
    ).eval()
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 1, 1000)
    with torch.no_grad():
        err = max_err(model.forward_sequence(x), hf(x[:, 0]).last_hidden_state)
    assert err <= ATOL
