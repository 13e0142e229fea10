#!/usr/bin/python3
"""Train the heart-xgb model artifact from the UCI heart disease data.

Run from the repository root with Debian's interpreter (it sees python3-xgboost):

    /usr/bin/python3 training/train.py

Outputs (overwritten, byte-for-byte reproducible; no timestamps anywhere):

    models/heart-xgb/model.json     XGBoost save_model JSON (feature_names set)
    models/heart-xgb/manifest.json  name, version, schema, threshold, checksums, metrics
    models/heart-xgb/golden.csv     all 920 rows + XGBoost probability (parity reference)
    models/heart-xgb/heldout.csv    the held-out rows with label (evaluation set)
    models/heart-xgb-1.1.0/         the same four files for version 1.1.0 (VARIANTS)
    internal/registry/testdata/poor/  a model trained on shuffled labels (POOR)

See training/README.md for the data handling, split and hyper-parameter choice.
"""

import argparse
import hashlib
import io
import json
import math
import os
import sys

import numpy as np
import sklearn
import xgboost as xgb
from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, train_test_split

NAME = "heart-xgb"
VERSION = "1.0.0"
SEED = 20240601
HELDOUT_FRACTION = 0.20
THRESHOLD = 0.5

# Column order of the UCI processed.*.data files; the first 13 are the model
# features, in exactly this order (keep in sync with schemas.FeatureNames).
FEATURE_NAMES = [
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
    "thalach", "exang", "oldpeak", "slope", "ca", "thal",
]
# Site order is also the order of the rows in golden.csv and the order in which
# the files are hashed for training_data_sha256.
SITES = ["cleveland", "hungarian", "switzerland", "va"]

# Small grid, scored by 5-fold stratified CV AUC on the training part only.
GRID = [
    {"max_depth": d, "eta": eta, "num_boost_round": n, "min_child_weight": mcw}
    for d in (2, 3, 4)
    for eta in (0.05, 0.1)
    for n in (100, 200)
    for mcw in (1, 3)
]
FIXED_PARAMS = {
    "booster": "gbtree",
    "objective": "binary:logistic",
    "tree_method": "hist",
    "nthread": 1,
    "seed": SEED,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "eval_metric": "auc",
}


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_site(path):
    """Parse one UCI processed file: '?' -> NaN; chol 0 and trestbps 0 -> NaN."""
    rows, labels, lines = [], [], []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f.read().decode("ascii").split("\n"), start=1):
            if raw == "":
                continue
            fields = raw.split(",")
            if len(fields) != 14:
                raise ValueError(f"{path}:{lineno}: {len(fields)} fields, want 14")
            vals = [math.nan if v == "?" else float(v) for v in fields]
            feats = vals[:13]
            for name in ("chol", "trestbps"):
                i = FEATURE_NAMES.index(name)
                if feats[i] == 0.0:
                    feats[i] = math.nan
            rows.append(feats)
            labels.append(1 if vals[13] > 0 else 0)
            lines.append(lineno)
    return rows, labels, lines


def load(data_dir):
    X, y, site, line = [], [], [], []
    h = hashlib.sha256()
    for s in SITES:
        p = os.path.join(data_dir, f"processed.{s}.data")
        with open(p, "rb") as f:
            h.update(f.read())
        r, l, ln = parse_site(p)
        X += r
        y += l
        site += [s] * len(r)
        line += ln
    return (np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64),
            np.asarray(site), np.asarray(line), h.hexdigest())


def train(params, X, y, rounds):
    d = xgb.DMatrix(X, label=y, missing=np.nan, feature_names=FEATURE_NAMES,
                    feature_types=["float"] * len(FEATURE_NAMES), nthread=1)
    p = dict(FIXED_PARAMS)
    p.update(params)
    return xgb.train(p, d, num_boost_round=rounds)


def predict(booster, X):
    d = xgb.DMatrix(X, missing=np.nan, feature_names=FEATURE_NAMES,
                    feature_types=["float"] * len(FEATURE_NAMES), nthread=1)
    return booster.predict(d)


def cv_score(cfg, X, y, strata):
    skf = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    aucs = []
    params = {"max_depth": cfg["max_depth"], "eta": cfg["eta"], "min_child_weight": cfg["min_child_weight"]}
    for tr, va in skf.split(X, strata):
        b = train(params, X[tr], y[tr], cfg["num_boost_round"])
        aucs.append(roc_auc_score(y[va], predict(b, X[va])))
    return float(np.mean(aucs))


def fmt(v):
    """Full-precision, reproducible number text; empty for missing."""
    v = float(v)
    if math.isnan(v):
        return ""
    return repr(v)


def write_csv(path, header, rows):
    buf = io.StringIO()
    buf.write(",".join(header) + "\n")
    for r in rows:
        buf.write(",".join(r) + "\n")
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(buf.getvalue())


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# Further honest versions: fixed hyper-parameters chosen in advance (not by
# looking at the held-out rows), trained on the same training part, so the
# model lifecycle (push, activate, shadow, rollback) runs on real models.
VARIANTS = [
    {
        "version": "1.1.0",
        "dir": os.path.join("models", "heart-xgb-1.1.0"),
        "params": {"max_depth": 3, "eta": 0.05, "num_boost_round": 150, "min_child_weight": 3},
        "note": "deeper trees, more rounds; fixed in advance, not tuned on the held-out rows",
    },
]

# A deliberately poor model for the registry's gate tests: the same features
# and hyper-parameters as 1.0.0, trained on the training part's labels
# shuffled (so it learns nothing real). Its manifest records its honest,
# poor held-out metrics.
POOR = {
    "name": "heart-xgb-poor",
    "version": "0.0.1-shuffled",
    "dir": os.path.join("internal", "registry", "testdata", "poor"),
    "params": {"max_depth": 2, "eta": 0.05, "num_boost_round": 100, "min_child_weight": 3},
    "note": "trained on shuffled labels (test data: the validation gates must refuse it)",
}


def write_artifact(out, name, version, booster, X, y, site, line, tr_idx, ho_idx, data_sha, hyper, cv_auc, note=None):
    """Write model.json, golden.csv, heldout.csv and manifest.json into out."""
    p_all = predict(booster, X)
    p_ho = p_all[ho_idx]
    y_ho = y[ho_idx]
    metrics = {
        "heldout_auc": round(float(roc_auc_score(y_ho, p_ho)), 6),
        "heldout_accuracy": round(float(accuracy_score(y_ho, (p_ho >= THRESHOLD).astype(int))), 6),
        "heldout_brier": round(float(brier_score_loss(y_ho, p_ho)), 6),
        "heldout_rows": int(len(ho_idx)),
        "train_rows": int(len(tr_idx)),
        "cv_auc": round(cv_auc, 6),
    }
    print(f"{name} {version}: {json.dumps(metrics)}", file=sys.stderr)

    os.makedirs(out, exist_ok=True)
    model_path = os.path.join(out, "model.json")
    booster.save_model(model_path)
    # Re-load to make sure the written file is what the golden values describe.
    check = xgb.Booster(model_file=model_path)
    if check.feature_names != FEATURE_NAMES:
        sys.exit(f"feature names not saved: {check.feature_names}")
    p_check = predict(check, X)
    if not np.array_equal(p_check, p_all):
        sys.exit("re-loaded model predicts differently")

    write_csv(os.path.join(out, "golden.csv"), FEATURE_NAMES + ["probability"],
              [[fmt(v) for v in X[i]] + [fmt(p_all[i])] for i in range(len(y))])
    write_csv(os.path.join(out, "heldout.csv"),
              FEATURE_NAMES + ["label", "probability", "site", "source_line"],
              [[fmt(v) for v in X[i]] + [str(int(y[i])), fmt(p_all[i]), str(site[i]), str(int(line[i]))]
               for i in ho_idx])

    manifest = {
        "name": name,
        "version": version,
        "feature_names": FEATURE_NAMES,
        "threshold": THRESHOLD,
        "objective": "binary:logistic",
        "booster": "gbtree",
        "training_data_sha256": data_sha,
        "training_data_sha256_method": "sha256 of the concatenated bytes of processed.{cleveland,hungarian,switzerland,va}.data in that order",
        "model_file": "model.json",
        "model_sha256": sha256_file(model_path),
        "metrics": metrics,
        "hyperparameters": {**{k: v for k, v in FIXED_PARAMS.items() if k != "eval_metric"}, **hyper},
        "split": {
            "method": "sklearn train_test_split, stratified by site_label, rows sorted by index",
            "heldout_fraction": HELDOUT_FRACTION,
            "seed": SEED,
            "heldout_file": "heldout.csv",
        },
        "golden_file": "golden.csv",
        "xgboost_version": xgb.__version__,
        "sklearn_version": sklearn.__version__,
        "seed": SEED,
        "created_by": "training/train.py",
    }
    if note:
        manifest["notes"] = note
    with open(os.path.join(out, "manifest.json"), "w", encoding="ascii", newline="\n") as f:
        f.write(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    print(f"wrote {out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = repo_root()
    ap.add_argument("--data", default=os.path.join(root, "datasets", "uci-heart-disease"))
    ap.add_argument("--out", default=None,
                    help="directory of the main artifact (default <out-root>/models/heart-xgb)")
    ap.add_argument("--out-root", default=root,
                    help="root under which every artifact is written at its repository path")
    ap.add_argument("--only-main", action="store_true", help="write only the main artifact")
    args = ap.parse_args()
    out_main = args.out or os.path.join(args.out_root, "models", NAME)

    X, y, site, line, data_sha = load(args.data)
    if len(y) != 920:
        sys.exit(f"expected 920 rows, got {len(y)}")
    strata = np.char.add(np.char.add(site.astype(str), "_"), y.astype(str))
    idx = np.arange(len(y))
    tr_idx, ho_idx = train_test_split(idx, test_size=HELDOUT_FRACTION, random_state=SEED,
                                      shuffle=True, stratify=strata)
    tr_idx, ho_idx = np.sort(tr_idx), np.sort(ho_idx)
    # The held-out rows are the registry's evaluation set: no training or
    # choice below ever sees them.
    if np.intersect1d(tr_idx, ho_idx).size != 0:
        sys.exit("training and held-out rows overlap")

    # Hyper-parameters: CV on the training part only; held-out rows are never looked at.
    best, best_auc = None, -1.0
    for cfg in GRID:
        auc = cv_score(cfg, X[tr_idx], y[tr_idx], strata[tr_idx])
        print(f"cv auc={auc:.4f} {cfg}", file=sys.stderr)
        if auc > best_auc + 1e-12:
            best, best_auc = cfg, auc
    print(f"chosen {best} cv_auc={best_auc:.4f}", file=sys.stderr)

    params = {"max_depth": best["max_depth"], "eta": best["eta"], "min_child_weight": best["min_child_weight"]}
    booster = train(params, X[tr_idx], y[tr_idx], best["num_boost_round"])
    write_artifact(out_main, NAME, VERSION, booster, X, y, site, line, tr_idx, ho_idx, data_sha, best, best_auc)
    if args.only_main:
        return

    for v in VARIANTS:
        cfg = v["params"]
        cv = cv_score(cfg, X[tr_idx], y[tr_idx], strata[tr_idx])
        p = {k: cfg[k] for k in ("max_depth", "eta", "min_child_weight")}
        b = train(p, X[tr_idx], y[tr_idx], cfg["num_boost_round"])
        write_artifact(os.path.join(args.out_root, v["dir"]), NAME, v["version"], b, X, y, site, line,
                       tr_idx, ho_idx, data_sha, cfg, cv, v["note"])

    cfg = POOR["params"]
    y_shuffled = y.copy()
    y_shuffled[tr_idx] = np.random.RandomState(SEED).permutation(y[tr_idx])
    p = {k: cfg[k] for k in ("max_depth", "eta", "min_child_weight")}
    b = train(p, X[tr_idx], y_shuffled[tr_idx], cfg["num_boost_round"])
    cv = cv_score(cfg, X[tr_idx], y_shuffled[tr_idx], strata[tr_idx])
    write_artifact(os.path.join(args.out_root, POOR["dir"]), POOR["name"], POOR["version"], b, X, y, site, line,
                   tr_idx, ho_idx, data_sha, cfg, cv, POOR["note"])


if __name__ == "__main__":
    main()
