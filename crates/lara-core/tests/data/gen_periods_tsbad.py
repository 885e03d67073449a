#!/usr/bin/env python3
"""Reference periods for crates/lara-core/tests/period_tsbad.rs.

For every TSB-AD CSV in DIR: the first feature column (after `pd.read_csv(path).dropna()` and
dropping `Label` / `timestamp`, as shared/peers/run_peer.py does), passed to TSB-AD 1.5's
`find_length_rank(..., rank=1)`. Also records how close each decision was, so that a mismatch
can be told apart from a floating-point near-tie:
  - `tie_gap`: ACF value of the chosen local maximum minus the runner-up local maximum;
  - `edge_gap`: smallest ACF difference between the chosen lag and its two neighbours;
  - `min_step`: smallest |ACF difference| between any two neighbouring lags (a tiny value means
    a local maximum could appear or vanish through rounding alone).
Run: <metrics-venv>/bin/python gen_periods_tsbad.py DIR > periods_tsbad.json
"""
import glob, json, os, sys
import numpy as np, pandas as pd
import TSB_AD
from TSB_AD.utils.slidingWindows import find_length_rank
from statsmodels.tsa.stattools import acf
from scipy.signal import argrelextrema

d = sys.argv[1]
out = {
    "command": "~/.cache/lara-peers/metrics-venv/bin/python crates/lara-core/tests/data/gen_periods_tsbad.py "
               "../shared/data/tsbad > crates/lara-core/tests/data/periods_tsbad.json",
    "reference": "TSB_AD.utils.slidingWindows.find_length_rank(data[:, 0].reshape(-1, 1), rank=1), TSB-AD "
                 + getattr(TSB_AD, "__version__", "1.5"),
    "periods": {},
    "diagnostics": {},
}
for path in sorted(glob.glob(os.path.join(d, "*.csv"))):
    df = pd.read_csv(path).dropna()
    data = df.drop(columns=[c for c in ("Label", "timestamp") if c in df.columns]).values.astype(float)
    x = data[:, 0]
    p = int(find_length_rank(x.reshape(-1, 1), rank=1))
    name = os.path.basename(path)
    out["periods"][name] = p
    xs = x[: min(20000, len(x))]
    ac = acf(xs, nlags=400, fft=True)[3:]
    lm = argrelextrema(ac, np.greater)[0]
    diag = {"n": int(len(x)), "n_local_max": int(len(lm)),
            "min_step": float(np.min(np.abs(np.diff(ac)))) if len(ac) > 1 else None}
    if len(lm) > 0:
        vals = ac[lm]
        order = np.argsort(vals)[::-1]
        best = lm[order[0]]
        diag["best_index"] = int(best)
        diag["tie_gap"] = float(vals[order[0]] - vals[order[1]]) if len(lm) > 1 else None
        diag["edge_gap"] = float(min(ac[best] - ac[best - 1], ac[best] - ac[best + 1]))
    out["diagnostics"][name] = diag
json.dump(out, sys.stdout, indent=1, sort_keys=False)
print()
