"""Make an example for `hpcrun score`: an XGBoost classifier and a Parquet table to score.

    python scripts/score/make_example.py OUTDIR [--rows 1000000] [--features 32] [--trees 100]

writes OUTDIR/model.json (binary:logistic, depth 6, trained on 20k rows of the same
distribution) and OUTDIR/table.parquet (an int64 `id` column, then f0..f{F-1} float32, in
row groups of 131072 rows). The same seed gives the same files, so `make demo-score` and
benchmarks/score_throughput.py score the same table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xgboost as xgb

ROW_GROUP = 131_072


def features(rows: int, count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, count)).astype(np.float32)


def label(x: np.ndarray) -> np.ndarray:
    """A target with interactions, so the trees have something to learn."""
    signal = x[:, 0] + 0.5 * x[:, 1] * x[:, 2] - np.abs(x[:, 3]) + 0.3 * x[:, -1]
    return (signal > -0.5).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    train = features(20_000, args.features, seed=1)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "nthread": 2},
        xgb.DMatrix(train, label=label(train)),
        num_boost_round=args.trees,
    )
    booster.save_model(args.out / "model.json")
    x = features(args.rows, args.features, seed=2)
    columns = {"id": pa.array(np.arange(args.rows, dtype=np.int64))}
    columns |= {f"f{i}": pa.array(x[:, i]) for i in range(args.features)}
    pq.write_table(pa.table(columns), args.out / "table.parquet", row_group_size=ROW_GROUP)
    print(f"wrote {args.out}/model.json ({args.trees} trees) and {args.out}/table.parquet "
          f"({args.rows:,} rows x {args.features} features)")


if __name__ == "__main__":
    main()
