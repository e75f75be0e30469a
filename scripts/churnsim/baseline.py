"""The baselines of a ChurnSim data set's README, by its evaluation protocol.

Features per eligible (account, date): the count of each event type in the 28 days before the
date, tenure_days and mrr. Models per horizon: a logistic regression on standardised
log(1 + x), XGBoost on the raw features (300 trees, depth 4, learning rate 0.05, row and
column subsampling 0.8, minimum child weight 5) and the tenure-only reference. Prints AUC and
top-decile lift on the test dates, or with --json one object per horizon.

    python baseline.py DATA_DIR [--end 2020-10-01] [--test-from 2020-06-01] [--json]
"""

import argparse
import json
import math
import os

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from xgboost import XGBClassifier

HORIZONS = (30, 60, 90)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir")
    p.add_argument("--end", default="2020-10-01", help="the data end date")
    p.add_argument("--test-from", default=None, help="default: four months before the end")
    p.add_argument("--json", action="store_true")
    return p.parse_args()


def load(data_dir):
    subs = pd.read_csv(os.path.join(data_dir, "subscriptions.csv"),
                       parse_dates=["start_date", "end_date"])
    labels = pd.read_csv(os.path.join(data_dir, "churn_labels.csv"),
                         parse_dates=["first_start_date", "churn_date"])
    types = pd.read_csv(os.path.join(data_dir, "event_types.csv"))
    events = pd.read_csv(os.path.join(data_dir, "events.csv.gz"),
                         usecols=["account_id", "event_time", "event_type"],
                         parse_dates=["event_time"])
    return subs, labels, list(types["event_type"]), events


def observation_rows(subs, labels, event_types, events, dates):
    """One row per eligible (account, date), ordered by account then date."""
    first = labels.set_index("account_id")["first_start_date"]
    churn = labels.set_index("account_id")["churn_date"]
    frames = []
    for d in dates:
        active = subs[(subs.start_date <= d) & (d < subs.end_date)]
        mrr = active.groupby("account_id")["mrr"].sum()
        mrr = mrr[first.reindex(mrr.index) < d]
        window = events[(events.event_time >= d - pd.Timedelta(days=28)) & (events.event_time < d)]
        counts = (window.groupby(["account_id", "event_type"]).size().unstack(fill_value=0)
                  .reindex(index=mrr.index, columns=event_types, fill_value=0))
        rows = counts.astype(float)
        rows["tenure_days"] = (d - first.reindex(mrr.index)).dt.days.astype(float)
        rows["mrr"] = mrr.astype(float)
        rows["date"] = d
        rows["churn_date"] = churn.reindex(mrr.index)
        frames.append(rows.reset_index())
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["account_id", "date"], kind="stable").reset_index(drop=True)


def top_decile_lift(score, y, account, date):
    """Churn rate of the highest-scored tenth (rounded up) over the overall rate; equal scores
    ordered by account id, then date."""
    order = np.lexsort((date, account, -score))
    k = math.ceil(len(y) / 10)
    return y[order[:k]].mean() / y.mean()


def main():
    args = parse_args()
    end = pd.Timestamp(args.end)
    test_from = pd.Timestamp(args.test_from) if args.test_from else \
        (end - pd.DateOffset(months=4)).replace(day=1)
    subs, labels, event_types, events = load(args.data_dir)
    start = labels.first_start_date.min()
    dates = list(pd.date_range(start + pd.Timedelta(days=1), end, freq="MS"))
    rows = observation_rows(subs, labels, event_types, events, dates)
    features = event_types + ["tenure_days", "mrr"]

    results = []
    for h in HORIZONS:
        horizon_end = rows.date + pd.Timedelta(days=h)
        y_all = ((rows.churn_date > rows.date) & (rows.churn_date <= horizon_end)).to_numpy()
        train = (horizon_end <= test_from).to_numpy()
        test = ((rows.date >= test_from) & (horizon_end <= end)).to_numpy()
        x_train, y_train = rows.loc[train, features].to_numpy(), y_all[train]
        x_test, y_test = rows.loc[test, features].to_numpy(), y_all[test]
        account = rows.loc[test, "account_id"].to_numpy()
        date = rows.loc[test, "date"].to_numpy()

        logistic = make_pipeline(FunctionTransformer(np.log1p), StandardScaler(),
                                 LogisticRegression(max_iter=5000))
        logistic.fit(x_train, y_train)
        boosted = XGBClassifier(n_estimators=300, max_depth=4, learning_rate=0.05,
                                subsample=0.8, colsample_bytree=0.8, min_child_weight=5,
                                random_state=0, n_jobs=1)
        boosted.fit(x_train, y_train)
        scores = {
            "lr": logistic.predict_proba(x_test)[:, 1],
            "xgb": boosted.predict_proba(x_test)[:, 1],
            "tenure": -rows.loc[test, "tenure_days"].to_numpy(),
        }
        result = {"horizon": h, "train_pairs": int(train.sum()), "train_churned": int(y_train.sum()),
                  "test_pairs": int(test.sum()), "test_churned": int(y_test.sum())}
        for name, s in scores.items():
            result[f"{name}_auc"] = roc_auc_score(y_test, s)
            result[f"{name}_lift"] = top_decile_lift(s, y_test.astype(float), account, date)
        results.append(result)

    if args.json:
        print(json.dumps(results))
        return
    print(f"baselines of {args.data_dir}: trained before {test_from:%Y-%m-%d}, "
          f"tested from {test_from:%Y-%m-%d} to {end:%Y-%m-%d}")
    print("| H | train pairs | test pairs | churn rate | logistic regression AUC / lift "
          "| XGBoost AUC / lift | tenure only AUC / lift |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['horizon']} days | {r['train_pairs']:,} | {r['test_pairs']:,} "
              f"| {100 * r['test_churned'] / r['test_pairs']:.2f}% "
              f"| {r['lr_auc']:.3f} / {r['lr_lift']:.2f} | {r['xgb_auc']:.3f} / {r['xgb_lift']:.2f} "
              f"| {r['tenure_auc']:.3f} / {r['tenure_lift']:.2f} |")


if __name__ == "__main__":
    main()
