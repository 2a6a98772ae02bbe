"""Procedural volumes: deterministic, the right shape and type, values that look right."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

from hpcrun.scenes import generators
from hpcrun.scenes.generators import GENERATORS, ct_phantom, marschner_lobb, supernova
from hpcrun.scenes.model import GENERATOR_FORMATS


def digest(array: np.ndarray) -> str:  # type: ignore[type-arg]
    return hashlib.sha256(array.tobytes()).hexdigest()


def test_every_generator_has_a_format_and_produces_it() -> None:
    assert set(GENERATORS) == set(GENERATOR_FORMATS)
    for name, function in GENERATORS.items():
        volume = function((10, 6, 4), 3)
        assert volume.shape == (4, 6, 10), name
        assert volume.dtype == np.dtype(GENERATOR_FORMATS[name]), name


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_deterministic_and_independent_of_slab_size(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    function = GENERATORS[name]
    first = digest(function(40, 11))
    assert digest(function(40, 11)) == first
    monkeypatch.setattr(generators, "SLAB_PLANES", 7)
    assert digest(function(40, 11)) == first


def test_seed_changes_supernova_and_phantom_noise_but_not_the_analytic_field() -> None:
    assert digest(supernova(32, 1)) != digest(supernova(32, 2))
    assert digest(ct_phantom(32, 1)) != digest(ct_phantom(32, 2))
    assert digest(marschner_lobb(32, 1)) == digest(marschner_lobb(32, 2))


def test_out_is_filled_in_place_and_checked() -> None:
    out = np.zeros((8, 9, 10), dtype=np.uint8)
    assert supernova((10, 9, 8), 4, out=out) is out
    assert np.array_equal(out, supernova((10, 9, 8), 4))
    with pytest.raises(ValueError, match="expected"):
        supernova(8, 4, out=np.zeros((8, 8, 8), dtype=np.uint16))
    with pytest.raises(ValueError, match="at least 2 voxels"):
        supernova((1, 8, 8))


def test_supernova_is_a_bright_shell_in_an_empty_surrounding() -> None:
    volume = supernova(96)
    assert volume.min() == 0 and volume.max() >= 240
    corners = volume[[0, 0, -1, -1], [0, -1, 0, -1], [0, -1, -1, 0]]
    assert corners.max() < 5
    z, y, x = np.indices(volume.shape)
    radius = np.sqrt((x - 47.5) ** 2 + (y - 47.5) ** 2 + (z - 47.5) ** 2) / 48
    shell = volume[(radius > 0.5) & (radius < 0.7)].mean()
    centre = volume[radius < 0.3].mean()
    outside = volume[radius > 0.95].mean()
    assert shell > 1.5 * centre > 0  # bright shell around a dimmer, non-empty interior
    assert outside < 5
    # Filaments: the shell is far from uniform (ridged noise carves it).
    assert volume[(radius > 0.5) & (radius < 0.7)].std() > 30


def test_marschner_lobb_matches_the_formula() -> None:
    volume = marschner_lobb(33)
    x = (np.arange(33) + 0.5) / 33 * 2 - 1
    k = 20
    r = np.hypot(x[k], x[5])
    expected = (
        1 - np.sin(np.pi * x[7] / 2) + 0.25 * (1 + np.cos(12 * np.pi * np.cos(np.pi * r / 2)))
    )
    expected /= 2.5
    assert abs(int(volume[7, 5, k]) - expected * 255) <= 1
    assert volume.dtype == np.uint8 and volume.min() >= 0 and volume.max() <= 255


def test_ct_phantom_has_air_skull_and_ventricles() -> None:
    volume = ct_phantom(64).astype(np.float64) / 65535
    assert volume[0, 0, 0] == 0  # air
    centre = volume[32, :, 32]
    assert centre.max() > 0.95  # the skull along the vertical line through the centre
    brain = volume[32, 32, 32]
    assert 0.12 < brain < 0.4
    ventricle = volume[32, 32, int((0.22 + 1) / 2 * 64)]  # left ventricle centre
    assert ventricle < 0.05


def test_supernova_256_within_budget_on_one_core() -> None:
    """The issue's budget: 256^3 in < 3 s on one core (CPU time, so a busy CI is fair)."""
    started = time.process_time()
    supernova(256, 1074)
    assert time.process_time() - started < 3.0
