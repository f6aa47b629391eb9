"""Scoring and training speed of the mlloop ML core, against raw CatBoost on the same model.

    python -m benchmarks.scoring                      # latency + training on 100k ideas
    python -m benchmarks.scoring --ideas 20000        # quicker
    python -m benchmarks.scoring --skip-training      # latency only (~20 s)

Prints figures, never asserts. Aims (docs/mlloop-models.md): fast path p99 < 1 ms and within
1.5x of raw CatBoost predict with a user stream's extra features (issue 17: two extras, one
numeric and one categorical, as a declared feature set sends them); walk-forward training
within 3x of one raw fit on all the ideas.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from plugins.mlloop.ml.data import GLOBAL, prepare_features
from plugins.mlloop.ml.inference import FastScorer
from plugins.mlloop.ml.train import catboost_classifier, train_model

CATEGORICAL = {"strategy_type": ["single", "vertical", "butterfly"], "side": ["call", "put"],
               "vix_regime": ["low", "normal", "elevated", "high"],
               "market_mode": ["trend", "chop", "squeeze"],
               "bias_direction": ["up", "down", "flat"]}


EXTRA = {"edge": "numeric", "setup": "categorical"}  # a declared feature set's extras


def synthetic_ideas(n: int, n_features: int = 45, n_days: int = 20, n_regimes: int = 3,
                    seed: int = 0, extras: bool = False) -> tuple[pd.DataFrame, list[str], list[str]]:
    """n settled ideas over n_days trading days; 5 categorical + (n_features - 5) numeric
    features, signal in a handful of them; 4 profit tiers; labels settle 0-2 days later.
    Returns (frame, feature_list, context_features)."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2025-01-06", periods=n_days, tz="UTC")
    day = days[np.sort(rng.integers(0, n_days, n))]
    decision = day + pd.to_timedelta(14 * 3600 + rng.integers(0, 6 * 3600, n), unit="s")
    label = decision.normalize() + pd.to_timedelta(rng.integers(0, 3, n), unit="D") \
        + pd.Timedelta(hours=21)
    n_num = n_features - len(CATEGORICAL)
    num = rng.normal(size=(n, n_num)).astype(np.float64)
    frame = pd.DataFrame(num, columns=[f"f{i:02d}" for i in range(n_num)])
    for name, values in CATEGORICAL.items():
        frame[name] = rng.choice(values, n)
    latent = (0.9 * num[:, 0] - 0.7 * num[:, 1] + 0.5 * num[:, 2] * num[:, 3]
              + 0.6 * (frame["strategy_type"] == "butterfly") - 0.4 * (frame["side"] == "put"))
    if extras:
        frame["edge"] = rng.normal(size=n)
        frame["setup"] = rng.choice(["A", "B", "C"], n)
        latent = latent + 0.8 * frame["edge"] + 0.3 * (frame["setup"] == "A")
    r2r = 0.5 * (latent + rng.normal(size=n))
    frame["idea_id"] = [f"idea-{i}" for i in range(n)]
    frame["decision_time"] = decision
    frame["label_time"] = label
    if n_regimes:
        frame["regime"] = rng.choice([f"r{i}" for i in range(n_regimes)], n)
    frame["original_score"] = 50 + 10 * (0.3 * num[:, 0] + rng.normal(size=n))
    frame["profit_tier"] = np.select([r2r < -0.5, r2r < 0, r2r < 0.5], [0, 1, 2], 3)
    frame["r2r_achieved"] = r2r
    frame["pnl"] = 100.0 * r2r
    frame["profitable"] = (r2r > 0).astype(int)
    features = [f"f{i:02d}" for i in range(n_num)] + list(CATEGORICAL) + (list(EXTRA) if extras else [])
    context = [f"f{i:02d}" for i in range(n_num // 2, n_num)] + ["vix_regime", "market_mode"]
    return frame, features, context


def percentiles(samples_s) -> str:
    us = np.asarray(samples_s) * 1e6
    return f"p50 {np.percentile(us, 50):8.1f} us   p99 {np.percentile(us, 99):8.1f} us"


def bench_latency(args) -> None:
    frame, features, context = synthetic_ideas(args.latency_train_rows, args.features,
                                               n_days=10, n_regimes=0, seed=1,
                                               extras=not args.no_extras)
    params = {"iterations": args.latency_iterations, "depth": args.depth,
              "border_count": args.border_count, "thread_count": 2, "random_seed": 1}
    t = time.perf_counter()
    model = train_model(frame, features, params=params, train_days=10, min_train_samples=1)
    print(f"latency model: {args.latency_train_rows} rows x {len(features)} features"
          f"{'' if args.no_extras else ' (incl. the extras ' + ', '.join(EXTRA) + ')'}, "
          f"{args.latency_iterations} trees depth {args.depth}, calibration "
          f"{model.calibration.method!r}, trained in {time.perf_counter() - t:.1f} s")
    scorer = FastScorer(model, ml_weight=0.3)
    raw = model.catboost("tier", GLOBAL)
    ideas = frame.sample(args.calls, replace=True, random_state=2)
    records = ideas[features].to_dict("records")
    ctx = {k: records[0][k] for k in context}
    scorer.cache_context("ctx", ctx)
    idea_rows = [{k: v for k, v in r.items() if k not in ctx} for r in records]
    prepared = model.prepare(ideas)
    obj_rows = [prepared.iloc[[i]].to_numpy(dtype=object) for i in range(len(prepared))]
    df_rows = [prepared.iloc[[i]] for i in range(min(len(prepared), 1000))]

    for r in idea_rows[:200]:  # warm up
        scorer.score(r, 50.0, context_id="ctx")
    # Interleaved, so load from other processes on the machine hits every variant alike.
    fast, fast_full, raw_np, raw_df = [], [], [], []
    clock = time.perf_counter
    for i in range(args.calls):
        t = clock()
        scorer.score(idea_rows[i], 50.0, context_id="ctx")
        t1 = clock()
        scorer.score(records[i], 50.0)
        t2 = clock()
        raw.predict_proba(obj_rows[i], thread_count=1)
        t3 = clock()
        fast.append(t1 - t)
        fast_full.append(t2 - t1)
        raw_np.append(t3 - t2)
        if i < len(df_rows):
            t4 = clock()
            raw.predict_proba(df_rows[i], thread_count=1)
            raw_df.append(clock() - t4)
    print("\none idea")
    print(f"  FastScorer.score (cached context)   {percentiles(fast)}")
    print(f"  FastScorer.score (all features)     {percentiles(fast_full)}")
    print(f"  raw CatBoost predict_proba, numpy   {percentiles(raw_np)}")
    print(f"  raw CatBoost predict_proba, 1-row DataFrame {percentiles(raw_df)}")
    print(f"  ratio FastScorer / raw numpy: p50 {np.median(fast) / np.median(raw_np):.2f}x, "
          f"p99 {np.percentile(fast, 99) / np.percentile(raw_np, 99):.2f}x (aim: p99 within 1.5x)")

    batch = frame.sample(1000, random_state=3)
    batch_prepared = model.prepare(batch)
    scores = batch["original_score"].to_numpy()
    scorer.score_batch(batch, scores)
    fast_b, raw_b, raw_b_prep = [], [], []
    for _ in range(args.batch_repeats):
        t = clock()
        scorer.score_batch(batch, scores)
        t1 = clock()
        raw.predict_proba(batch_prepared)
        t2 = clock()
        raw.predict_proba(prepare_features(batch, features, model.cat_features))
        t3 = clock()
        fast_b.append(t1 - t)
        raw_b.append(t2 - t1)
        raw_b_prep.append(t3 - t2)
    print("\nbatch of 1,000 ideas")
    print(f"  FastScorer.score_batch              {percentiles(fast_b)}")
    print(f"  raw CatBoost predict_proba          {percentiles(raw_b)}")
    print(f"  raw predict_proba + feature prep    {percentiles(raw_b_prep)}")
    print(f"  ratio score_batch / raw: p50 {np.median(fast_b) / np.median(raw_b):.2f}x "
          f"({np.median(fast_b) / 1000 * 1e6:.1f} us per idea)")


def bench_training(args) -> None:
    frame, features, _ = synthetic_ideas(args.ideas, args.features, args.days, args.regimes)
    params = {"iterations": args.iterations, "depth": args.depth,
              "border_count": args.border_count, "learning_rate": args.learning_rate,
              "thread_count": 2, "random_seed": 1}
    print(f"\ntraining: {args.ideas} ideas x {len(features)} features over {args.days} trading "
          f"days, {args.regimes} regimes; {args.iterations} trees depth {args.depth} "
          f"border_count {args.border_count}; windows train {args.train_days} / validate "
          f"{args.val_days} / step {args.step_days} days")
    X = prepare_features(frame, features, list(CATEGORICAL))
    t = time.perf_counter()
    raw = catboost_classifier(params, "MultiClass")
    raw.fit(X, frame["profit_tier"].to_numpy(), cat_features=list(CATEGORICAL))
    raw_s = time.perf_counter() - t
    print(f"  raw CatBoost MultiClass fit on all ideas      {raw_s:7.1f} s")

    start = time.perf_counter()

    def progress(done, total, message):
        print(f"    [{time.perf_counter() - start:6.1f} s] {done}/{total} {message}", flush=True)

    model = train_model(frame, features, cat_features=list(CATEGORICAL),
                        score_column="original_score", params=params,
                        train_days=args.train_days, val_days=args.val_days,
                        step_days=args.step_days, min_train_samples=1,
                        min_regime_samples=args.min_regime_samples, progress=progress)
    pipe_s = time.perf_counter() - start
    agg = model.metrics["aggregate"]
    print(f"  walk-forward pipeline (train_model)           {pipe_s:7.1f} s "
          f"= {pipe_s / raw_s:.2f}x raw")
    print(f"    {model.metrics['n_windows']} windows x (MultiClass + Logloss), final MultiClass "
          f"+ Logloss, regime models {model.metrics['regimes']['models']}")
    print(f"    held-out auc_ovr {agg['auc_ovr']:.3f}, auc_profitable {agg['auc_profitable']:.3f} "
          f"vs rule {agg['rule_auc_profitable']:.3f}; top-10 pnl {agg['top_10_pnl']:.1f} vs "
          f"base {agg['base_pnl']:.1f}; calibration: {model.metrics['calibration']['reason']}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ideas", type=int, default=100_000, help="ideas for the training run")
    p.add_argument("--features", type=int, default=45)
    p.add_argument("--days", type=int, default=20, help="trading days the ideas span")
    p.add_argument("--regimes", type=int, default=3, help="0 = no regime column")
    p.add_argument("--min-regime-samples", type=int, default=10**9,
                   help="regime model threshold for the training run (default: global only; "
                        "set e.g. 500 to include per-regime models)")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--border-count", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=0.15)
    p.add_argument("--train-days", type=int, default=10)
    p.add_argument("--val-days", type=int, default=5)
    p.add_argument("--step-days", type=int, default=5)
    p.add_argument("--latency-train-rows", type=int, default=20_000)
    p.add_argument("--latency-iterations", type=int, default=200)
    p.add_argument("--calls", type=int, default=5000, help="single-idea calls to time")
    p.add_argument("--batch-repeats", type=int, default=50)
    p.add_argument("--skip-training", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--no-extras", action="store_true", help="latency model without a feature set's extras")
    args = p.parse_args(argv)
    if not args.skip_latency:
        bench_latency(args)
    if not args.skip_training:
        bench_training(args)


if __name__ == "__main__":
    main()
