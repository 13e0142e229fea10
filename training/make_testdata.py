#!/usr/bin/python3
"""Write the small XGBoost model files that internal/model's refusal tests load.

Run from the repository root: /usr/bin/python3 training/make_testdata.py

Every file is a tiny model (2 trees, depth 2) trained on the first 120 UCI rows,
so the committed test data stays small. The files are committed; re-running
this script is only needed if the set of refusal cases changes.
"""

import os
import sys

import numpy as np
import xgboost as xgb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402  (same directory; reuse the parser and feature list)

OUT = os.path.join(train.repo_root(), "internal", "model", "testdata")


def dmatrix(X, y, names=train.FEATURE_NAMES, types=None, cat=False):
    return xgb.DMatrix(X, label=y, missing=np.nan, feature_names=names,
                       feature_types=types, nthread=1, enable_categorical=cat)


def fit(params, d, rounds=2):
    p = {"tree_method": "hist", "nthread": 1, "seed": 1, "max_depth": 2}
    p.update(params)
    return xgb.train(p, d, num_boost_round=rounds)


def main():
    X, y, _, _, _ = train.load(os.path.join(train.repo_root(), "datasets", "uci-heart-disease"))
    X, y = X[:120], y[:120]
    os.makedirs(OUT, exist_ok=True)
    d = dmatrix(X, y)

    ok = fit({"objective": "binary:logistic"}, d)
    ok.save_model(os.path.join(OUT, "tiny.json"))                  # valid, used as fuzz seed
    ok.save_model(os.path.join(OUT, "tiny.ubj"))                   # UBJSON
    ok.save_model(os.path.join(OUT, "tiny-xgb17.bin"))             # XGBoost 1.7 binary ('binf')

    fit({"objective": "binary:logistic", "booster": "gblinear"}, d).save_model(
        os.path.join(OUT, "gblinear.json"))
    fit({"objective": "binary:logistic", "booster": "dart", "rate_drop": 0.1}, d).save_model(
        os.path.join(OUT, "dart.json"))
    fit({"objective": "reg:squarederror"}, d).save_model(os.path.join(OUT, "objective-squarederror.json"))
    fit({"objective": "binary:logitraw"}, d).save_model(os.path.join(OUT, "objective-logitraw.json"))

    renamed = list(train.FEATURE_NAMES)
    renamed[3], renamed[4] = renamed[4], renamed[3]  # trestbps <-> chol
    fit({"objective": "binary:logistic"}, dmatrix(X, y, names=renamed)).save_model(
        os.path.join(OUT, "features-swapped.json"))

    # cp as a categorical feature: produces categorical splits.
    Xc = X.copy()
    Xc[:, 2] = Xc[:, 2] - 1  # categories must be 0-based non-negative integers
    types = ["q"] * 13
    types[2] = "c"
    fit({"objective": "binary:logistic", "max_cat_to_onehot": 1}, dmatrix(Xc, y, types=types, cat=True),
        rounds=3).save_model(os.path.join(OUT, "categorical.json"))
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
