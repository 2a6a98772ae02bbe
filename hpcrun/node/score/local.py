"""`--server none`: predict in the task, on one thread while the main one reads; XGBoost
predicts with `threads` threads of its own (the CPUs the task was given)."""

from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING

import numpy as np

from .model import load_model, predict
from .plan import ScorePlan
from .scoring import IN_FLIGHT, Pending, predict_options

if TYPE_CHECKING:
    from .model import Floats


class LocalScorer:
    """`--server none`: predict in this process on one thread while the main one reads."""

    depth = IN_FLIGHT

    def __init__(self, plan: ScorePlan, threads: int | None = None) -> None:
        self.booster = load_model(plan.model, plan.model_format, threads)
        self.options = predict_options(plan)
        self.features = len(plan.features)
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="predict")

    def alloc(self, rows: int) -> Floats:
        return np.empty((rows, self.features), dtype=np.float32)

    def submit(self, X: Floats) -> Pending:
        return Pending(self.pool.submit(predict, self.booster, X, *self.options), lambda: None)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
