"""Model operations: the scoring plan's per-idea path vs the raw fast path, the blob load the
scorer cache saves, replay per decision, and the service's training vs the raw pipeline.

    .venv/bin/python -m benchmarks.training

A simulated world (part 1's tables, SQLite file) is trained on and promoted; then, interleaved:
(a) ``plan.for_idea`` + ``scorer.score`` for one idea, (b) ``FastScorer.score`` alone (the raw
fast path) -- p50/p99 and the ratio; the cold blob load; ``replay_decision``; and
``service.training.train`` (load + walk-forward + register) vs ``ml.train.train_model`` on the same
frame. Prints, never asserts.
"""
from __future__ import annotations

import statistics
import tempfile
import time

from app.db import Database
from bus import outbox
from plugins.mlloop import service
from plugins.mlloop import tables as p1
from tests.mlloop.test_service_training_data import (
    SMALL_OPTIONS, insert_rows, log_decisions, split_days, world_rows,
)

PARAMS = {"iterations": 200, "depth": 6, "random_seed": 7}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    d = tempfile.mkdtemp(prefix="tl_bench_training_")
    db = Database(f"sqlite:///{d}/bench.db")
    for md in (outbox.metadata, p1.metadata, p1.registry_metadata):
        md.create_all(db.engine)
    rows = world_rows(seed=1, days=12, per_day=500)
    train_rows, live_rows = split_days(rows, 10)
    with db.transaction() as c:
        insert_rows(c, train_rows)

    with db.transaction() as c:
        t = time.perf_counter()
        frame = service.training_data.load_training_frame(c)
        t_load = time.perf_counter() - t
        t = time.perf_counter()
        model = service.training.train(c, params=PARAMS, options=SMALL_OPTIONS, frame=frame)
        t_service = time.perf_counter() - t
        service.registry.promote(c, model["id"])
    t = time.perf_counter()
    service.training.train_frame(frame, params=PARAMS, options=SMALL_OPTIONS)
    t_raw = time.perf_counter() - t
    print(f"training on {len(frame)} ideas ({model['metrics']['n_windows']} windows, "
          f"200 trees depth 6): load {t_load * 1000:.0f} ms; service.training.train {t_service:.2f} s "
          f"vs train_model alone {t_raw:.2f} s ({t_service / t_raw:.2f}x: + dataset hash, "
          f"reference sample, blob, insert)")
    pooled = model["metrics"]["pooled"]
    print(f"held-out AUC(profitable): ML score {pooled['score_auc_profitable']:.3f} vs rule "
          f"{pooled['rule_auc_profitable']:.3f}; top-10 pnl {pooled['top_10_pnl']:.1f} vs base "
          f"{pooled['base_pnl']:.1f}")

    with db.transaction() as c:
        service.scoring_plan._SCORERS.clear()
        t = time.perf_counter()
        service.scoring_plan.load_scorer(c, model["id"])
        cold = time.perf_counter() - t
        t = time.perf_counter()
        service.scoring_plan.load_scorer(c, model["id"])
        warm = time.perf_counter() - t
        print(f"scorer: cold blob load {cold * 1000:.1f} ms, cached {warm * 1e6:.0f} us")
        plan = service.scoring_plan.scoring_plan(c, 1)
        snaps = [service.training_data.feature_dict(s) for s in live_rows["ml_feature_snapshots"][:2000]]
        ideas = live_rows["tracked_ideas"][:2000]
        scorer = plan.for_idea("warm", None).scorer
        planned, raw = [], []
        for idea, f in zip(ideas, snaps):
            t = time.perf_counter()
            a = plan.for_idea(idea["idea_id"], idea["regime"])
            a.scorer.score(f, 50.0)
            planned.append(time.perf_counter() - t)
            t = time.perf_counter()
            scorer.score(f, 50.0)
            raw.append(time.perf_counter() - t)
        print(f"one idea, {len(planned)} ideas: plan.for_idea + score p50 "
              f"{statistics.median(planned) * 1e6:.0f} us p99 {pct(planned, 0.99) * 1e6:.0f} us; "
              f"FastScorer.score alone p50 {statistics.median(raw) * 1e6:.0f} us p99 "
              f"{pct(raw, 0.99) * 1e6:.0f} us (ratio p50 "
              f"{statistics.median(planned) / statistics.median(raw):.2f}x, p99 "
              f"{pct(planned, 0.99) / pct(raw, 0.99):.2f}x; seed budget 5 ms)")
        live = {k: v[:300] for k, v in live_rows.items()}
        ids = {i["id"] for i in live["tracked_ideas"]}
        live = {k: [r for r in v if r.get("tracked_idea_id", r.get("id")) in ids] for k, v in live.items()}
        insert_rows(c, live)
        decision_ids = log_decisions(c, live)
    with db.read() as c:
        times, ok = [], 0
        for did in decision_ids[:200]:
            t = time.perf_counter()
            ok += service.replay.replay_decision(c, did)["matches"]
            times.append(time.perf_counter() - t)
        print(f"replay: {ok}/{len(times)} match; p50 {statistics.median(times) * 1000:.2f} ms "
              f"p99 {pct(times, 0.99) * 1000:.2f} ms per decision (loads its blob each time)")
        t = time.perf_counter()
        frame_d = service.training_data.decision_frame(c)
        service.evaluation.score_outcomes(frame_d)
        service.evaluation.ml_vs_rules(frame_d)
        service.evaluation.regime_breakdown(frame_d)
        print(f"evaluation over {len(frame_d)} settled decisions: "
              f"{(time.perf_counter() - t) * 1000:.0f} ms (load + three reports)")
    db.dispose()


if __name__ == "__main__":
    main()
