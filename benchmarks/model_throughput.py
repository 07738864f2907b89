"""Forward throughput of each model family on CPU, float32 and bfloat16 autocast.

Prints one JSON object: ECGs/s and achieved GFLOP/s per preset (batch 32, 2 threads), and
ECG-FM's encoder beside transformers' Wav2Vec2Model of the same configuration in one process.

    python benchmarks/model_throughput.py [--presets a,b] [--batch 32] [--seconds 20]

transformers' Wav2Vec2Model reads one channel, so it gets [B, samples] where ECG-FM gets
[B, 12, samples]: only the first convolution differs (12 vs 1 input channels), a negligible
share of the FLOPs.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from ecgfoundry.engine.precision import cpu_flags
from ecgfoundry.models import count_parameters, create_model

DEFAULT_PRESETS = (
    "ecgfounder-12lead", "net1d-small", "ecgfm-base", "ecgfm-small", "hubert-ecg-base",
    "hubert-ecg-small",
)  # fmt: skip


def flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


@torch.inference_mode()
def throughput(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype, budget: float) -> float:
    """Forward passes per second (ECGs/s) within about ``budget`` seconds, after a warm-up."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        model(x)
        runs, start = 0, time.perf_counter()
        while runs < 2 or time.perf_counter() - start < budget:
            model(x)
            runs += 1
    return runs * x.shape[0] / (time.perf_counter() - start)


def measure(name: str, model: torch.nn.Module, x: torch.Tensor, budget: float) -> dict:
    model.eval()
    per_ecg = flops(model, x[:1])
    row = {"name": name, "parameters": count_parameters(model), "gflop_per_ecg": per_ecg / 1e9}
    for label, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        rate = throughput(model, x, dtype, budget)
        row[f"{label}_ecg_per_s"] = round(rate, 2)
        row[f"{label}_gflop_per_s"] = round(rate * per_ecg / 1e9, 1)
    row["bf16_speedup"] = round(row["bfloat16_ecg_per_s"] / row["float32_ecg_per_s"], 2)
    return row


def transformers_twin(model: torch.nn.Module) -> torch.nn.Module:
    """transformers' Wav2Vec2Model with ECG-FM's configuration (random weights)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    c = model.config
    layers = [tuple(layer) for layer in c.conv_feature_layers]
    config = Wav2Vec2Config(
        hidden_size=c.encoder_embed_dim,
        num_hidden_layers=c.encoder_layers,
        num_attention_heads=c.encoder_attention_heads,
        intermediate_size=c.encoder_ffn_embed_dim,
        conv_dim=[d for d, _, _ in layers],
        conv_kernel=[k for _, k, _ in layers],
        conv_stride=[s for _, _, s in layers],
        conv_bias=False,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        num_conv_pos_embeddings=c.conv_pos,
        num_conv_pos_embedding_groups=c.conv_pos_groups,
        attn_implementation="sdpa",
    )
    return Wav2Vec2Model(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default=",".join(DEFAULT_PRESETS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0, help="time budget per measurement")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    rows, comparison = [], None
    for name in args.presets.split(","):
        model = create_model(name).eval()
        spec = model.spec
        x = torch.randn(args.batch, len(spec.leads), spec.samples)
        rows.append({**measure(name, model, x, args.seconds), "input": list(x.shape[1:])})
        if name == "ecgfm-base":
            twin = transformers_twin(model)
            hf = measure("transformers.Wav2Vec2Model", twin, x[:, 0], args.seconds)
            ours = rows[-1]
            comparison = {
                "ecgfoundry_ecgfm_base": ours,
                "transformers_wav2vec2": hf,
                "float32_ratio": round(ours["float32_ecg_per_s"] / hf["float32_ecg_per_s"], 2),
                "bfloat16_ratio": round(ours["bfloat16_ecg_per_s"] / hf["bfloat16_ecg_per_s"], 2),
            }
        del model
    result = {
        "benchmark": "model_throughput",
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_flags": cpu_flags(),
        "models": rows,
        "ecgfm_vs_transformers": comparison,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
