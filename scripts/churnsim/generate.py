"""Generates a ChurnSim data set in the layout of ../shared/data/churnsim-dev.

Runs the simulator of the PyPI package fightchurn 1.2.0 in batch mode, with three fixes applied
at run time (see the dev set's README, "Fixes applied to the simulator"), and writes accounts.csv,
subscriptions.csv, events.csv.gz, event_types.csv and churn_labels.csv into OUT_DIR. The
simulator normally copies each customer into PostgreSQL; here each customer is written straight
to the files in the form the database would give back, so no database is needed.

    python generate.py MODEL SEED OUT_DIR [--start 2020-01-01] [--end 2020-10-01] [--customers 1000]
"""

import argparse
import csv
import datetime as dt
import gzip
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zlib


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("seed", type=int)
    p.add_argument("out_dir")
    p.add_argument("--start", default="2020-01-01")
    p.add_argument("--end", default="2020-10-01")
    p.add_argument("--customers", type=int, default=1000)
    return p.parse_args()


def pg_number(x):
    """A number as PostgreSQL prints a double: shortest round-trip digits, no trailing '.0'."""
    if x is None:
        return ""
    x = float(x)
    return str(int(x)) if x.is_integer() else repr(x)


class Writer:
    """Receives each simulated customer, as the simulator's database copy would, and keeps
    what the data set's files need: events sorted as the export sorts them, cut at the end."""

    def __init__(self, out_dir, end, event_names):
        self.out_dir = out_dir
        self.end = end
        self.end_time = dt.datetime.combine(end, dt.time())
        self.event_names = event_names
        self.accounts = []
        self.subscriptions = []
        self.labels = []
        self.events_path = os.path.join(out_dir, "events.csv")
        self.events = open(self.events_path, "w", newline="")
        self.events.write("account_id,event_time,event_type,user_id,event_value\n")
        self.n_events = 0

    def account(self, customer):
        dob = customer.date_of_birth
        if isinstance(dob, dt.datetime):
            dob = dob.date()
        country = "" if customer.country in (None, "None") else customer.country
        self.accounts.append((customer.id, customer.channel, dob.isoformat(), country))

    def history(self, customer):
        cid = customer.id
        subs = [s for s in customer.subscriptions if s[1] <= self.end]
        for s in subs:
            # plan, start, end, mrr, quantity, units, billing period, discount
            self.subscriptions.append((cid, s[1], len(self.subscriptions), s))
        events = [e for e in customer.events if e[0] < self.end_time]
        # The export's order: time, event type id, user, value (no value sorts last).
        events.sort(key=lambda e: (e[0], e[1], e[2], e[3] is None, e[3] or 0))
        lines = [
            f"{cid},{e[0]:%Y-%m-%d %H:%M:%S},{self.event_names[e[1]]},"
            f"{'' if e[2] is None else e[2]},{'' if e[3] is None else e[3]}\n"
            for e in events
        ]
        self.events.writelines(lines)
        self.n_events += len(lines)
        first = min((s[1] for s in subs), default=None)
        last = max((s[2] for s in subs), default=None)
        churn = last if last is not None and last <= self.end else None
        last_event = f"{events[-1][0]:%Y-%m-%d %H:%M:%S}" if events else ""
        self.labels.append((cid, first, last, churn, last_event))

    def finish(self):
        self.events.close()
        write_csv(
            os.path.join(self.out_dir, "accounts.csv"),
            ["account_id", "channel", "date_of_birth", "country"],
            sorted(self.accounts),
        )
        rows = []
        for cid, _start, _order, s in sorted(self.subscriptions, key=lambda r: r[:3]):
            rows.append((cid, s[0], s[1].isoformat(), s[2].isoformat(), pg_number(s[3]),
                         pg_number(s[4]), "" if s[5] is None else s[5], int(s[6]),
                         pg_number(s[7])))
        write_csv(
            os.path.join(self.out_dir, "subscriptions.csv"),
            ["account_id", "product", "start_date", "end_date", "mrr", "quantity", "units",
             "bill_period_months", "discount"],
            rows,
        )
        labels = []
        for cid, first, last, churn, last_event in sorted(self.labels):
            iso = lambda d: "" if d is None else d.isoformat()
            labels.append((cid, iso(first), iso(last), iso(churn), int(churn is not None),
                           last_event))
        write_csv(
            os.path.join(self.out_dir, "churn_labels.csv"),
            ["account_id", "first_start_date", "last_end_date", "churn_date", "churned",
             "last_event_time"],
            labels,
        )
        # gzip -9n: maximum compression, no name and no time stamp, so the bytes depend on the
        # content only.
        with open(self.events_path, "rb") as src, \
                open(self.events_path + ".gz", "wb") as dst:
            subprocess.run(["gzip", "-9n", "-c"], stdin=src, stdout=dst, check=True)
        os.remove(self.events_path)
        return len(self.accounts), len(rows), sum(l[4] for l in labels), self.n_events


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def install_fixes(ChurnSimulation, Customer):
    """The three fixes of the dev set's README, as wrappers around the 1.2.0 simulator."""
    month_end = ChurnSimulation.customer_month_end

    def customer_month_end(self, customer, next_month):
        churned = month_end(self, customer, next_month)
        if churned and next_month < customer.next_renewal:
            # Fix 3: a churn before the renewal date ends every row of the current billing
            # period (the rows started with the last one), not only the last row.
            period_start = customer.subscriptions[-1][1]
            customer.subscriptions = [
                s[:2] + (next_month,) + s[3:] if s[1] == period_start else s
                for s in customer.subscriptions
            ]
        if not churned:
            # Fix 1: each month's churn decision uses that month's event counts.
            customer.reset_event_counts()
        return churned

    def add_subscriptions(self, start_date, plans, add_ons):
        # Fix 2: rows for the base plan and the add-ons the customer holds, not every add-on.
        units, quantity = Customer.get_unit_quantity(self.plan, plans, add_ons)
        self.subscriptions.append((self.plan, start_date, self.next_renewal, self.base_mrr,
                                   quantity, units, self.bill_period, self.discount))
        for _, add_on in self.add_ons.iterrows():
            units, quantity = Customer.get_unit_quantity(add_on["plan"], plans, add_ons)
            self.subscriptions.append((add_on["plan"], start_date, self.next_renewal,
                                       add_on["mrr"], quantity, units, self.bill_period,
                                       self.discount))

    ChurnSimulation.customer_month_end = customer_month_end
    Customer.add_subscriptions = add_subscriptions


def install_row_cache(Customer):
    """Speed only: a customer's daily event generation walks its behaviour table row by row
    with DataFrame.iterrows, which builds a Series per row and day and takes most of the run.
    The table does not change after the customer is made, so its rows are read once and
    handed out as plain dicts with the same values, in the same order. The output is
    unchanged (socialnet7 seed 5 still reproduces the dev set byte for byte)."""
    init = Customer.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        rows = [(i, r.to_dict()) for i, r in self.behavior_rates.iterrows()]
        self.behavior_rates.iterrows = lambda: iter(rows)

    Customer.__init__ = __init__


def main():
    args = parse_args()
    out_dir = os.path.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="churnsim-")
    # The simulator saves copies of its configuration under CHURN_OUT_DIR and keeps its id
    # counter in a temporary file: both go to a private folder.
    os.environ["CHURN_OUT_DIR"] = work

    from hydra import compose, initialize_config_module
    from fightchurn.churnsim.churnsim import ChurnSimulation
    from fightchurn.churnsim.customer import Customer

    Customer.ID_FILE = os.path.join(work, "customer_id.txt")
    Customer.ID_LOCK_FILE = os.path.join(work, "customer_id.lock")
    install_fixes(ChurnSimulation, Customer)
    install_row_cache(Customer)

    with initialize_config_module(config_module="fightchurn.churnsim.conf", version_base=None):
        cfg = compose(config_name=args.model, overrides=[
            f"random_seed={args.seed}",
            f"start_date='{args.start}'",
            f"end_date='{args.end}'",
            f"init_customers={args.customers}",
            "n_parallel=1",
            "force=True",
        ])

    # As the simulator's entry point does: seed Python's generator, then build the simulation
    # (its behaviour models seed NumPy's).
    random.seed(cfg.random_seed)
    sim = ChurnSimulation(cfg)
    end = sim.end_date
    names = list(next(iter(sim.behavior_models.values())).behave_names)
    writer = Writer(out_dir, end, names)

    # The database copy becomes the writer; the rest of the run is the simulator's own.
    ChurnSimulation.first_sim_setup = lambda self, force: self.remove_tmp_files()
    ChurnSimulation.add_customer_to_database = lambda self, c: writer.account(c)
    ChurnSimulation.customer_events_subs_to_database = lambda self, c: writer.history(c)
    ChurnSimulation.sim_rate_debug_query = lambda self: None

    sim.run_simulation(force=True)
    n_accounts, n_subs, n_churned, n_events = writer.finish()

    # Event types: the behaviours that produce events (not a user count or an event's value).
    value_of = {n for n in names if n.endswith("_value") and n[:-len("_value")] in names}
    write_csv(os.path.join(out_dir, "event_types.csv"), ["event_type_id", "event_type"],
              [(i, n) for i, n in enumerate(names) if n != "users" and n not in value_of])
    shutil.rmtree(work, ignore_errors=True)
    print(f"{args.model} seed {args.seed}: {n_accounts} accounts, {n_churned} churned by {end}, "
          f"{n_subs} subscription rows, {n_events} events -> {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
