"""nmt.plots (real PNG files of the expected size, with something drawn) and nmt.device."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nmt import plots
from nmt.config import ConfigError
from nmt.device import describe_device, resolve_device

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 120


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


def _check_png(path: Path, width_in: float, height_in: float) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 5_000
    assert _png_size(path) == (round(width_in * DPI), round(height_in * DPI))
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
    assert pixels.std() > 10  # not a blank canvas
    return pixels


def test_validation_curves_png(tmp_path: Path) -> None:
    curves = {"lstm": [(1.0, 3.0), (2.0, 8.5), (3.0, 11.0)], "transformer": [(1.5, 9.0)]}
    out = plots.plot_validation_curves(curves, tmp_path / "sub" / "valid.png")
    assert out == tmp_path / "sub" / "valid.png"  # the folder is created
    _check_png(out, 7, 4.5)


def test_validation_curves_without_points_still_draw_axes(tmp_path: Path) -> None:
    out = plots.plot_validation_curves({"lstm": []}, tmp_path / "empty.png")
    _check_png(out, 7, 4.5)


def test_test_bleu_bars_png_grows_with_the_sets(tmp_path: Path) -> None:
    scores = {
        "lstm": {"test_2016_flickr": 30.1, "test_2017_flickr": 25.0},
        "transformer": {"test_2016_flickr": 38.2, "test_2017_mscoco": 21.4},
    }
    out = plots.plot_test_bleu(scores, tmp_path / "bleu.png")
    width = max(5.0, 1.5 + 3 * (0.5 + 0.4 * 2))  # 3 test sets, 2 runs
    _check_png(out, width, 4.5)
    small = plots.plot_test_bleu({"a": {"t": 1.0}}, tmp_path / "small.png")
    _check_png(small, 5.0, 4.5)


def test_attention_heatmap_png(tmp_path: Path) -> None:
    src = ["▁ein", "▁Hund", "▁läuft", ".", "</s>"]
    tgt = ["▁a", "▁dog", "▁runs", ".", "</s>"]
    weights = np.eye(5).tolist()  # a diagonal: something to see
    out = plots.plot_attention(weights, src, tgt, tmp_path / "att.png", "title")
    _check_png(out, 3 + 0.35 * 5, 2.5 + 0.3 * 5)


def test_plots_leave_pyplot_backend_alone(tmp_path: Path) -> None:
    import matplotlib

    before = matplotlib.get_backend()
    plots.plot_validation_curves({"x": [(0.0, 1.0)]}, tmp_path / "v.png")
    assert matplotlib.get_backend() == before


# --- device ------------------------------------------------------------------------------


def test_auto_picks_cuda_only_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_cuda_without_cuda_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=f"device '{name}'.*CUDA is not available"):
            resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu")


def test_explicit_devices_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="no-such-device"):
        resolve_device("no-such-device")


def test_describe_device(monkeypatch: pytest.MonkeyPatch) -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe_device(torch.device("cpu")) == "cpu (1 thread)"
        torch.set_num_threads(2)
        assert describe_device(torch.device("cpu")) == "cpu (2 threads)"
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Fake GPU 80GB")
    assert describe_device(torch.device("cuda:0")) == "cuda:0 (Fake GPU 80GB)"
