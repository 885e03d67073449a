#!/usr/bin/env python3
"""Runs TSB-AD 1.5's IForest or PCA detector in a causal "prefix-fit" protocol and prints one JSON
line per file (same fields as ../shared/peers/run_peer.py, plus "protocol").

  python run_peer_prefix.py --method IForest|PCA [--fit prefix|whole] [--threads 1]
                            [--scores-dir DIR] FILE.csv [FILE.csv ...]

--fit prefix (default): the detector is fitted only on the training prefix, rows [0, train_end)
    (train_end = the number after `tr_` in NNN_<Dataset>_id_<k>_<Domain>_tr_<N>_1st_<M>.csv), and
    then scores every row of the file. Nothing it learns comes from the test part.
--fit whole: fitted on the whole series, as TSB-AD's own protocol does for these "unsupervised"
    methods (used to check this code path against run_peer.py's results).

Model construction follows TSB_AD.model_wrapper.run_IForest / run_PCA (same classes, same default
sliding window of 100, the tuned hyper-parameters of TSB_AD.HP_list: Optimal_Multi_algo_HP_dict
for more than one column, Optimal_Uni_algo_HP_dict for one). Scoring re-applies exactly the
feature transform that the class's fit() applies (windows, normalisation, zero-column pruning),
with statistics from the fitted part only; see score_iforest / score_pca for why the classes' own
decision_function() is not used. Metrics: TSB-AD's get_metrics with the metric window from the
first column's period, as run_peer.py does.
"""
import argparse, os, sys

ap = argparse.ArgumentParser()
ap.add_argument("--method", required=True, choices=["IForest", "PCA"])
ap.add_argument("--fit", choices=["prefix", "whole"], default="prefix")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--scores-dir")
ap.add_argument("files", nargs="+")
a = ap.parse_args()
# BLAS / OpenMP thread pools read these at import time.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[var] = str(a.threads)

import inspect, json, math, resource, time
import numpy as np, pandas as pd
from scipy.spatial.distance import cdist
from sklearn.utils import check_array
from threadpoolctl import threadpool_limits
from TSB_AD import model_wrapper
from TSB_AD.evaluation.metrics import get_metrics
from TSB_AD.HP_list import Optimal_Multi_algo_HP_dict, Optimal_Uni_algo_HP_dict
from TSB_AD.models.IForest import IForest
from TSB_AD.models.PCA import PCA
from TSB_AD.models.feature import Window
from TSB_AD.utils.slidingWindows import find_length_rank
from TSB_AD.utils.utility import zscore

try:  # TSB_AD pulls in torch elsewhere; keep it to the same thread budget if it is loaded
    import torch
    torch.set_num_threads(a.threads)
except Exception:
    torch = None


def wrapper_kwargs(method, hp):
    """Keyword arguments run_<method> would pass to the model class: its defaults, then the HP."""
    sig = inspect.signature(getattr(model_wrapper, f"run_{method}"))
    kw = {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}
    unknown = set(hp) - set(kw)
    if unknown:
        raise ValueError(f"hyper-parameters {sorted(unknown)} not accepted by run_{method}")
    kw.update(hp)
    return kw


def pad(scores, window, n):
    """The classes' padding of per-window scores back to one score per row (centred window)."""
    if scores.shape[0] < n:
        scores = np.array([scores[0]] * math.ceil((window - 1) / 2) + list(scores)
                          + [scores[-1]] * ((window - 1) // 2))
    return scores


def fit_iforest(train, kw):
    clf = IForest(slidingWindow=kw["slidingWindow"], n_estimators=kw["n_estimators"],
                  max_features=kw["max_features"], n_jobs=kw["n_jobs"])  # as run_IForest builds it
    clf.fit(train)
    state = {}
    if clf.normalize and train.shape[1] == 1:
        # fit() z-scores each window coordinate over the training windows (axis 0, ddof 0);
        # keep those statistics to apply the same map to the scored data.
        w = Window(window=clf.slidingWindow).convert(train)
        state["mu"], state["sd"] = w.mean(axis=0), w.std(axis=0, ddof=0)
    return clf, state


def score_iforest(clf, state, data):
    # TSB-AD's IForest.decision_function() skips the normalisation that fit() applies, so the
    # forest would see raw values while it was grown on z-scored ones; re-apply fit()'s transform.
    w = Window(window=clf.slidingWindow).convert(data)
    if clf.normalize:
        if data.shape[1] == 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                w = np.nan_to_num((w - state["mu"]) / state["sd"])  # same as utility.zscore
        else:
            w = zscore(w, axis=1, ddof=1)  # per-window, no fitted statistics
    w = check_array(w)
    s = -clf.detector_.decision_function(w)  # invert_order: outliers high
    return pad(s, clf.slidingWindow, data.shape[0])


def fit_pca(train, kw):
    clf = PCA(slidingWindow=kw["slidingWindow"], n_components=kw["n_components"])  # as run_PCA
    clf.fit(train)
    state = {}
    if clf.zero_pruning:
        # fit() drops the window coordinates that are all zero after standardisation (constant in
        # the fitted part); decision_function() forgets to, and then fails on a shape mismatch.
        w = check_array(Window(window=clf.slidingWindow).convert(train))
        if clf.standardization:
            w = clf.scaler_.transform(w)
        state["keep"] = np.any(w != 0, axis=0)
    return clf, state


def score_pca(clf, state, data):
    w = check_array(Window(window=clf.slidingWindow).convert(data))
    if clf.standardization:
        w = clf.scaler_.transform(w)
    if clf.zero_pruning:
        w = w[:, state["keep"]]
    s = np.sum(cdist(w, clf.selected_components_) / clf.selected_w_components_, axis=1).ravel()
    return pad(s, clf.slidingWindow, data.shape[0])


MODELS = {"IForest": (fit_iforest, score_iforest), "PCA": (fit_pca, score_pca)}


def train_end_of(name):
    parts = name.split(".")[0].split("_")
    return int(parts[parts.index("tr") + 1])


def run_file(path):
    name = os.path.basename(path)
    rec = {"file": name, "method": a.method, "protocol": a.fit}
    np.random.seed(2024)
    if torch is not None:
        torch.manual_seed(2024)
    df = pd.read_csv(path).dropna()
    data = df.drop(columns=[c for c in ("Label", "timestamp") if c in df.columns]).values.astype(float)
    label = df["Label"].astype(int).to_numpy()
    hp = (Optimal_Multi_algo_HP_dict if data.shape[1] > 1 else Optimal_Uni_algo_HP_dict).get(a.method, {})
    kw = wrapper_kwargs(a.method, hp)
    n_fit = train_end_of(name) if a.fit == "prefix" else data.shape[0]
    if not kw["slidingWindow"] < n_fit <= data.shape[0]:
        raise ValueError(f"fit part has {n_fit} rows; needs more than the detector window "
                         f"{kw['slidingWindow']} and at most the {data.shape[0]} rows of the file")
    window = int(find_length_rank(data[:, 0].reshape(-1, 1), rank=1))
    rec["sliding_window"] = window
    fit, score_fn = MODELS[a.method]
    t0 = time.time()
    clf, state = fit(data[:n_fit], kw)
    score = score_fn(clf, state, data)
    rec["seconds"] = round(time.time() - t0, 3)
    rec["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    if score.shape[0] != data.shape[0] or not np.all(np.isfinite(score)):
        raise ValueError(f"bad score vector: {score.shape[0]} values for {data.shape[0]} rows, "
                         f"{int(np.sum(~np.isfinite(score)))} not finite")
    if a.scores_dir:
        os.makedirs(a.scores_dir, exist_ok=True)
        np.savetxt(os.path.join(a.scores_dir, name[:-4] + ".score.txt"), score)
    if label.sum() == 0:
        rec["error"] = "no labelled anomaly in the file: TSB-AD's metrics are undefined"
        return rec
    m = get_metrics(score, label, slidingWindow=window)
    rec.update({k: round(float(v), 6) for k, v in m.items()})
    return rec


with threadpool_limits(limits=a.threads):
    for path in a.files:
        try:
            rec = run_file(path)
        except Exception as e:  # one line per file, whatever happens
            rec = {"file": os.path.basename(path), "method": a.method, "protocol": a.fit,
                   "error": f"{type(e).__name__}: {e}"}
        # field order as in run_peer.py, "protocol" after "method"
        order = ["file", "method", "protocol", "seconds", "sliding_window", "peak_rss_mb"]
        rec = {**{k: rec[k] for k in order if k in rec}, **{k: v for k, v in rec.items() if k not in order}}
        print(json.dumps(rec), flush=True)
