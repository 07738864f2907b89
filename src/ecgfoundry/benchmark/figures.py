"""The report's figures as PNG bytes (matplotlib, no display): label-efficiency curves and SHAP
maps (lead importance, and attributions over a record's 12-lead ECG)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def efficiency_figure(table: pd.DataFrame, task: str, split: str = "val") -> bytes:
    """Macro AUROC against the share of training labels, one line per model and mode (mean
    over seeds, bars: the seeds' range)."""
    plt = _pyplot()
    rows = table[(table["status"] == "done") & (table["split"] == split)]
    rows = rows[(rows["data"] + ":" + rows["task"]) == task]
    figure, axis = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    for (model, mode), group in rows.groupby(["model", "mode"], sort=True):
        by_fraction = group.groupby("fraction")["macro_auroc"].agg(["mean", "min", "max"])
        x = by_fraction.index.to_numpy() * 100
        axis.errorbar(x, by_fraction["mean"], marker="o", capsize=3, label=f"{model} ({mode})",
                      yerr=[by_fraction["mean"] - by_fraction["min"],
                            by_fraction["max"] - by_fraction["mean"]])  # fmt: skip
    fractions = sorted(rows["fraction"].unique() * 100)
    axis.set_xscale("log")
    axis.set_xticks(fractions, [f"{f:g}" for f in fractions])
    axis.minorticks_off()
    axis.set_xlabel("training labels used (%)")
    axis.set_ylabel(f"macro AUROC ({split})")
    axis.set_title(task, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, frameon=False)
    return _png(figure)


def attribution_figure(classes: list[dict[str, Any]], x: np.ndarray, fs: float) -> bytes:
    """Per class: lead importance (bars) and the SHAP values of its first positive record's
    (lead, segment) cells shaded behind that record's 12 leads (red: towards the class)."""
    plt = _pyplot()
    figure, axes = plt.subplots(len(classes), 2, figsize=(11, 3.2 * len(classes)),
                                squeeze=False, gridspec_kw={"width_ratios": [1, 3]},
                                constrained_layout=True)  # fmt: skip
    for (bars, trace), entry in zip(axes, classes, strict=True):
        result = entry["result"]
        importance = result.lead_importance()
        bars.barh(result.leads[::-1], importance[::-1], color="tab:gray")
        bars.set_title(f"{entry['label']}: lead importance", fontsize=9)
        bars.tick_params(labelsize=7)
        record = int(np.flatnonzero(entry["positives"])[0])
        values = result.values[record]
        limit = max(np.abs(values).max(), 1e-12)
        leads, samples = x.shape[1], x.shape[2]
        seconds = np.arange(samples) / fs
        segment = samples / values.shape[1] / fs
        for lead in range(leads):
            offset = -3.0 * lead
            for s, value in enumerate(values[lead]):
                colour = "tab:red" if value > 0 else "tab:blue"
                trace.axvspan(s * segment, (s + 1) * segment, ymin=(leads - lead - 1) / leads,
                              ymax=(leads - lead) / leads, color=colour,
                              alpha=0.6 * abs(value) / limit, lw=0)  # fmt: skip
            signal = x[record, lead]
            scale = max(np.abs(signal).max(), 1e-6)
            trace.plot(seconds, offset + 1.2 * signal / scale, color="black", lw=0.6)
        trace.set_yticks([-3.0 * i for i in range(leads)], result.leads, fontsize=7)
        trace.set_ylim(-3.0 * leads + 1.5, 1.5)
        trace.set_xlim(0, samples / fs)
        trace.set_xlabel("seconds", fontsize=8)
        trace.set_title(f"{entry['label']}: SHAP values on a positive record "
                        "(red: towards the class, blue: against)", fontsize=9)  # fmt: skip
    return _png(figure)


__all__ = ["attribution_figure", "efficiency_figure"]
