"""The heart rate that ``data inspect`` shows, against mitdb's annotated beats.

Prints one JSON object. Usage:

    python benchmarks/heart_rate.py --root DIR/mitdb [--every 60] [--channel 0]

Every ``--every`` seconds of each of the 48 records, a 10-s window of one channel (0: MLII,
1: the second lead): the detector's median rate (``ecgfoundry.data.rpeaks.heart_rate``)
against the median rate of the beats annotated in the window (windows with fewer than two
are skipped). Reported: windows, the share within 5 and 10 beats/min, the mean absolute
error, and the windows given no rate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import wfdb

from ecgfoundry.data.rpeaks import heart_rate

BEATS = set("NLRBAaJSVrFejnE/fQ?")  # mitdb's beat annotation symbols
SECONDS = 10.0


def errors(root: Path, every: float, channel: int) -> list[float]:
    """|detected - annotated| rate per window, inf where the detector gives none."""
    found = []
    for beats_file in sorted(root.glob("*.atr")):
        base = str(beats_file.with_suffix(""))
        signal, fields = wfdb.rdsamp(base, channels=[channel])
        annotation = wfdb.rdann(base, "atr")
        fs, length = fields["fs"], int(SECONDS * fields["fs"])
        beats = np.array([s for s, y in zip(annotation.sample, annotation.symbol, strict=True)
                          if y in BEATS])  # fmt: skip
        for start in range(0, len(signal) - length, int(every * fs)):
            inside = beats[(beats >= start) & (beats < start + length)]
            if len(inside) < 2:
                continue
            truth = 60 * fs / np.median(np.diff(inside))
            rate = heart_rate(signal[start : start + length, 0], fs)
            found.append(np.inf if rate is None else abs(rate - truth))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="mitdb folder")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between windows")
    parser.add_argument("--channel", type=int, default=0, help="0: MLII, 1: the second lead")
    args = parser.parse_args()
    found = np.array(errors(args.root, args.every, args.channel))
    if not len(found):
        parser.error(f"--root {args.root}: no annotated mitdb records there")
    finite = found[np.isfinite(found)]
    print(json.dumps({
        "records": len(list(args.root.glob("*.atr"))), "channel": args.channel,
        "every_seconds": args.every, "windows": len(found),
        "within_5_per_min": round(float(np.mean(found <= 5)), 4),
        "within_10_per_min": round(float(np.mean(found <= 10)), 4),
        "mean_absolute_error_per_min": round(float(finite.mean()), 2) if len(finite) else None,
        "windows_without_rate": int(np.isinf(found).sum()),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
