"""Built-in and scene colormaps: 256 RGBA entries, transparent empty space."""

from __future__ import annotations

import numpy as np
import pytest

from hpcrun.node.viewer import colormaps


def test_builtins_are_256_rgba_tables_with_transparent_low_values() -> None:
    assert colormaps.names()[0] == colormaps.DEFAULT
    for name in colormaps.names():
        table = colormaps.lut(name)
        assert table.shape == (256, 4) and table.dtype == np.float32
        assert table.min() >= 0.0 and table.max() <= 1.0
        assert table[:20, 3].max() == 0.0  # empty space stays empty (and skippable)
        assert table[-1, 3] > 0.0


def test_lut_returns_a_copy_and_unknown_names_fail() -> None:
    colormaps.lut("fire")[:, :] = 0.0
    assert colormaps.lut("fire")[-1, 3] > 0.0
    with pytest.raises(KeyError, match="fire"):
        colormaps.lut("no-such-map")


def test_register_resamples_scene_colormaps() -> None:
    colormaps.register("test-two-entries", [(0, 0, 0, 0), (1.0, 0.5, 0.0, 0.2)])
    table = colormaps.lut("test-two-entries")
    assert "test-two-entries" in colormaps.names()
    assert table[0].tolist() == [0, 0, 0, 0]
    assert table[255] == pytest.approx([1.0, 0.5, 0.0, 0.2])
    assert table[128, 0] == pytest.approx(128 / 255, abs=1e-6)
    assert colormaps.resample([(0.3, 0.3, 0.3, 2.0)]).shape == (256, 4)
    with pytest.raises(ValueError):
        colormaps.register("bad", [(0, 0, 0)])
    with pytest.raises(ValueError):
        colormaps.register("", [(0, 0, 0, 0)])
