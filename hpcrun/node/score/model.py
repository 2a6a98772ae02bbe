"""The model: load it, predict with it, and describe it for `inspect`.

`load_model` and `predict` are the one loader and the one predict call of every server
mode: `--server none` calls them in the task, and the pytriton server's Python backend
model imports them from this very module (out of the task's zipapp), so every mode sends
the same float32 matrix through the same XGBoost call and returns the same bits.
`inspect_model` reads a model's feature count, classes and objective; `hpcrun score
export` calls it on the user's machine too (for a LightGBM or Treelite model without
numpy, hence numpy's guarded import).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import TaskError
from .packages import SCORE_HINT, require

with contextlib.suppress(ImportError):  # a missing numpy: reported by packages.missing_package
    import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

    Floats = npt.NDArray[np.float32]

XGBOOST_FORMATS = ("xgboost_json", "xgboost_ubj")
MODEL_FORMATS = (*XGBOOST_FORMATS, "lightgbm", "treelite_checkpoint")
FORMAT_NAMES = {"xgboost_json": "XGBoost JSON", "xgboost_ubj": "XGBoost UBJSON"}


def load_model(path: str, fmt: str, threads: int | None = None) -> Any:
    """An XGBoost booster; the one loader of `--server none` and of the Triton model.
    `threads`: its predict threads (`scoring.task_threads`); None keeps XGBoost's default
    (every CPU it sees)."""
    if fmt not in XGBOOST_FORMATS:
        raise TaskError(
            f"a {fmt} model can only be scored by Triton's FIL backend",
            "use --server triton, or convert the model to XGBoost",
        )
    import xgboost as xgb

    raw = read_model_bytes(path)
    check_model_kind(path, raw, fmt)
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(raw))  # from memory: the format is not guessed from the name
    except (xgb.core.XGBoostError, UnicodeDecodeError) as exc:
        # XGBoost's own error message is not UTF-8 for binary junk: that is the error then.
        raise TaskError(
            f"{path} is not an {FORMAT_NAMES[fmt]} model: {first_line(str(exc))}",
            f"pass --model-format with the model's format ({', '.join(MODEL_FORMATS)})",
        ) from exc
    if threads is not None:
        booster.set_param({"nthread": threads})
    return booster


def predict(booster: Any, X: Floats, predict: str, threshold: float, num_class: int) -> Floats:
    """(n, K) float32 predictions of the (n, F) float32 `X`, the same in every server mode.

    proba: probabilities (or regression values); class: class ids as float32; raw: margins.
    """
    if predict == "raw":
        out = booster.inplace_predict(X, predict_type="margin")
    else:
        out = booster.inplace_predict(X, predict_type="value")
        if predict == "class":
            out = to_classes(np.asarray(out), threshold, num_class)
    values: Floats = np.asarray(out, dtype=np.float32)
    return values.reshape(len(X), 1) if values.ndim == 1 else values


def to_classes(values: Floats, threshold: float, num_class: int) -> Floats:
    """argmax of class probabilities, multi:softmax's ids as they are, else value > threshold."""
    if values.ndim == 2 and values.shape[1] > 1:
        ids: Floats = np.argmax(values, axis=1).astype(np.float32)
        return ids
    if num_class > 1:
        return values.astype(np.float32)
    return (values > threshold).astype(np.float32)


_SOURCE_LOCATION = re.compile(r"^\S+\.(?:cc|cpp|cu|h):\d+: ")


def first_line(text: str) -> str:
    """The first line of an XGBoost error, without its `[hh:mm:ss] ` stamp."""
    lines = text.strip().splitlines()
    line = lines[0] if lines else "unknown error"
    if line.startswith("[") and "] " in line[:12]:
        line = line.split("] ", 1)[1]
    # XGBoost's build tree (`/workspace/src/c_api/c_api.cc:1513: `) means nothing to a user.
    return _SOURCE_LOCATION.sub("", line, count=1)


def read_model_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise TaskError(f"model {path} does not exist", "check the --model path") from exc
    except OSError as exc:
        raise TaskError(f"cannot read model {path}: {exc.strerror}", "check the path") from exc


def sniff_model(raw: bytes) -> str | None:
    """The model format `raw` looks like, if it looks like one."""
    head = raw[:4096]
    if head.lstrip()[:1] == b"{":
        return "xgboost_ubj" if b"\x00" in head else "xgboost_json"
    if b"max_feature_idx=" in head or head.startswith(b"tree\n"):
        return "lightgbm"
    return None


def check_model_kind(path: str, raw: bytes, fmt: str) -> None:
    """Refuse a model of another known format with the --model-format that fits it."""
    kind = sniff_model(raw)
    if kind is not None and kind != fmt:
        raise TaskError(
            f"{path} is not an {FORMAT_NAMES[fmt]} model: it looks like {kind}",
            f"pass --model-format {kind}",
        )


def inspect_model(model: str, fmt: str) -> dict[str, Any]:
    path = str(Path(model).absolute())
    raw = read_model_bytes(path)
    if fmt == "lightgbm":
        return lightgbm_info(path, raw)
    if fmt == "treelite_checkpoint":
        return model_info(fmt, None, 0, None, None)
    require("xgboost", SCORE_HINT)
    booster = load_model(path, fmt)
    learner = json.loads(booster.save_config())["learner"]
    return model_info(
        fmt,
        int(booster.num_features()),
        int(learner["learner_model_param"]["num_class"]),
        learner["objective"]["name"],
        booster.feature_names,
    )


def model_info(
    fmt: str, features: int | None, num_class: int, objective: str | None, names: Any
) -> dict[str, Any]:
    return {
        "format": fmt,
        "features": features,
        "num_class": num_class,
        "objective": objective,
        "feature_names": list(names) if names else None,
    }


def lightgbm_info(path: str, raw: bytes) -> dict[str, Any]:
    """Features, classes and objective from a LightGBM text model's header."""
    header: dict[str, str] = {}
    for line in raw[: 1 << 20].decode("utf-8", "replace").splitlines():
        if line.startswith("Tree="):
            break
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    if "max_feature_idx" not in header:
        kind = sniff_model(raw)
        raise TaskError(
            f"{path} is not a LightGBM text model: it has no max_feature_idx= line",
            f"pass --model-format {kind}"
            if kind
            else f"pass --model-format with the model's format ({', '.join(MODEL_FORMATS)})",
        )
    names = header.get("feature_names")
    objective = header.get("objective")
    return model_info(
        "lightgbm",
        int(header["max_feature_idx"]) + 1,
        int(header.get("num_class", "1")),
        objective.split()[0] if objective else None,
        names.split() if names else None,
    )
