"""Steward against the README baselines on several ChurnSim data sets: one table.

Each data set is `dev` (the shared development set) or MODEL:SEED, generated with
churnsim-generate into OUT_ROOT/MODEL-SEED unless it is already there. For each: the baselines
(churnsim-baseline) and Steward's model card (churnsim-eval: import as a user would, train on
what was known before the test period, test after it), per horizon.

    python table.py [--out OUT_ROOT] [SPEC ...]
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.dirname(HERE)
DEV = os.path.normpath(os.path.join(SCRIPTS, "..", "..", "shared", "data", "churnsim-dev"))
FILES = ("accounts.csv", "subscriptions.csv", "events.csv.gz", "event_types.csv",
         "churn_labels.csv")
DEFAULT = ["dev", "socialnet7:1", "socialnet7:2", "socialnet7:3", "crm6:1", "crm5:1"]


def data_dir(spec, out_root):
    if spec == "dev":
        return DEV
    model, seed = spec.split(":")
    path = os.path.join(out_root, f"{model}-{seed}")
    if not all(os.path.exists(os.path.join(path, f)) for f in FILES):
        subprocess.run([os.path.join(SCRIPTS, "churnsim-generate"), model, seed, path], check=True)
    return path


def run_json(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("CHURNSIM_OUT", "/tmp/churnsim"))
    p.add_argument("specs", nargs="*", default=DEFAULT)
    args = p.parse_args()

    lines = []
    for spec in args.specs:
        path = data_dir(spec, args.out)
        print(f"== {spec}: {path}", file=sys.stderr)
        base = run_json([os.path.join(SCRIPTS, "churnsim-baseline"), path, "--json"])
        card = run_json([os.path.join(SCRIPTS, "churnsim-eval"), path, "--json"])
        ours = {h["horizon_days"]: h for h in card["horizons"]}
        name = "dev (socialnet7:5)" if spec == "dev" else spec
        for b in base:
            s = ours.get(b["horizon"])
            if s and (s["test_rows"], s["test_churned"]) != (b["test_pairs"], b["test_churned"]):
                print(f"warning: {spec} {b['horizon']} days: Steward tested "
                      f"{s['test_rows']} pairs ({s['test_churned']} churned), the baseline "
                      f"{b['test_pairs']} ({b['test_churned']})", file=sys.stderr)
            best = max(b["lr_auc"], b["xgb_auc"])
            steward = f"{s['auc']:.3f} / {s['top_decile_lift']:.2f}" if s else "none"
            verdict = ("yes" if s["auc"] >= best else "no") + f" ({s['auc'] - best:+.3f})" \
                if s else "no"
            lines.append(
                f"| {name} | {b['horizon']} | {b['test_pairs']:,} | {b['test_churned']} "
                f"| {b['lr_auc']:.3f} / {b['lr_lift']:.2f} | {b['xgb_auc']:.3f} / {b['xgb_lift']:.2f} "
                f"| {steward} | {verdict} |")
        print("\n".join(lines[-len(base):]), file=sys.stderr)

    print("| data set | H (days) | test pairs | churned | logistic AUC / lift | XGBoost AUC / lift "
          "| Steward AUC / lift | Steward >= better baseline AUC |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
