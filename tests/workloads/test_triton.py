"""Triton's own grammar decides whether a model repository is one it loads: the FIL
repository hpcrun exports parses, a broken one is refused naming the file."""

from __future__ import annotations

import pytest

from hpcrun.errors import UsageError
from hpcrun.workloads.score import MODEL_NAME, fil_model_repository
from hpcrun.workloads.triton import check_model_config, models_in, repository_under


def exported() -> dict[str, str]:
    return fil_model_repository(
        model_format="xgboost_json", features=8, width=1, predict="proba", gpus=False
    )


def test_the_exported_repository_is_one_triton_loads() -> None:
    assert models_in(exported()) == [MODEL_NAME]


def test_a_config_triton_would_refuse_names_the_file_and_the_error() -> None:
    broken = next(iter(exported().values())).replace("max_batch_size", "max_batch")
    with pytest.raises(UsageError, match=r"m/config.pbtxt: Triton would refuse .*max_batch"):
        check_model_config("m/config.pbtxt", broken)


def test_a_model_in_a_directory_of_another_name_is_refused() -> None:
    ((path, text),) = exported().items()
    with pytest.raises(UsageError, match="lives in 'other'"):
        models_in({path.replace(path.split("/")[0], "other"): text})


def test_a_config_without_a_backend_is_refused() -> None:
    with pytest.raises(UsageError, match="names no backend"):
        check_model_config("m/config.pbtxt", 'name: "m"\nmax_batch_size: 8\n')


def test_an_empty_repository_is_refused() -> None:
    with pytest.raises(UsageError, match="holds no model"):
        models_in({})


def test_the_repository_goes_under_the_store() -> None:
    assert repository_under("s3://b/models/") == "s3://b/models/model_repository"
