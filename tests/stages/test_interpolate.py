"""Interpolation paths, style mixing, and the `gankit interpolate` / `style-mix` figures."""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from gankit.loading import zoo
from gankit.data import wplus_column
from gankit.images import to_uint8
from gankit.latent.latents import interpolation_path, latents_in_space, mix_layers, sample_z
from gankit.report import labelled_grid
from jobs.commands.cli import main
from jobs.stages.interpolate import InterpolateConfig, run_interpolate


def test_interpolation_path_ends_are_the_inputs():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, generator=g) * 3, torch.randn(6, generator=g)
    z = interpolation_path(a, b, 5, "z")                               # [5, 6]
    assert torch.equal(z[0], a) and torch.equal(z[-1], b)
    # slerp keeps the directions on the great circle; the norms go linearly
    torch.testing.assert_close(z.norm(dim=1), torch.linspace(a.norm(), b.norm(), 5))
    wa, wb = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    wp = interpolation_path(wa, wb, 3, "wp")                           # [3, 3, 6]
    assert torch.equal(wp[0], wa) and torch.equal(wp[-1], wb)
    torch.testing.assert_close(wp[1], (wa + wb) / 2)
    with pytest.raises(ValueError, match="steps"):
        interpolation_path(a, b, 1, "w")


def test_mix_layers_keeps_each_source_on_its_layers():
    g = torch.Generator().manual_seed(1)
    row, col = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    out = mix_layers(row, col, [0, 1, 3])
    assert torch.equal(out[:, [0, 1, 3]], col[:, [0, 1, 3]])
    assert torch.equal(out[:, [2, 4]], row[:, [2, 4]])
    with pytest.raises(ValueError, match="layers"):
        mix_layers(row, col, [5])


def render(G, ws: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(G.synthesis(ws, noise_mode="const"))           # [N, H, W, 3]


def seed_ws(G, seeds) -> torch.Tensor:
    z = np.concatenate([sample_z(s, [0], G.z_dim) for s in seeds])
    return latents_in_space(G, z, "wp")                                # [S, num_ws, w_dim]


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("space", ["z", "w"])
def test_interpolate_grid_ends_render_as_the_seeds(model_files, tmp_path, space):
    G = zoo.load_generator(model_files["model"]).eval()
    cfg = InterpolateConfig(out=str(tmp_path), model=model_files["model"], seeds=[3, 7, 9],
                            space=space, steps=4, device="cpu", scale=1)
    doc = run_interpolate(cfg)
    ends = render(G, seed_ws(G, [3, 7, 9]))                            # [3, H, W, 3]
    # the grid is exactly the labelled grid of rows (3 > 7), (7 > 9) with those ends
    grid = read_png(tmp_path / "interpolate.png")
    first = labelled_grid(np.zeros((2, 4, *ends.shape[1:]), np.uint8),
                          ["seed 3 to seed 7", "seed 7 to seed 9"],
                          [f"{t:.2f}" for t in np.linspace(0, 1, 4)], scale=1)
    assert grid.shape == first.shape
    frames = Image.open(tmp_path / "interpolate.gif")
    assert frames.n_frames == 7                                        # seed 7 shown once
    cells = []
    for i in range(frames.n_frames):
        frames.seek(i)
        cells.append(np.asarray(frames.convert("RGB")))
    # GIF palettes quantise: compare the ends loosely, and the JSON's latents exactly
    for frame, end in ((cells[0], ends[0]), (cells[3], ends[1]), (cells[6], ends[2])):
        assert np.abs(frame.astype(int) - end).mean() < 6
    assert not np.array_equal(cells[1], cells[0])
    saved = json.loads((tmp_path / "interpolate.json").read_text())
    assert saved["space"] == space and saved["method"] == ("slerp" if space == "z" else "lerp")
    assert len(saved["latents"]) == 3 and doc["sources"] == ["seed 3", "seed 7", "seed 9"]


def test_style_mix_grid_keeps_row_and_column_sources(model_files, tmp_path):
    G = zoo.load_generator(model_files["model"]).eval()               # num_ws = 4
    rc = ["--row-seeds", "1,2,3", "--col-seeds", "4,5", "--layers", "0-1"]
    assert main(["style-mix", *rc, "--out", str(tmp_path), "--model", model_files["model"],
                 "--device", "cpu", "--scale", "1"]) == 0
    rows, cols = seed_ws(G, [1, 2, 3]), seed_ws(G, [4, 5])
    cells = np.full((4, 3, G.img_resolution, G.img_resolution, 3), 255, np.uint8)
    cells[0, 1:], cells[1:, 0] = render(G, cols), render(G, rows)
    for i in range(3):
        for j in range(2):   # coarse ws 0-1 from the column, the rest from the row
            ws = torch.cat([cols[j:j + 1, :2], rows[i:i + 1, 2:]], dim=1)
            cells[i + 1, j + 1] = render(G, ws)[0]
    expected = labelled_grid(cells, ["", "seed 1", "seed 2", "seed 3"],
                             ["", "seed 4", "seed 5"], scale=1)
    got = read_png(tmp_path / "style_mix.png")
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected).max() <= 1               # batched rounding
    doc = json.loads((tmp_path / "style_mix.json").read_text())
    assert doc["layers"] == [0, 1] and doc["rows"] == ["seed 1", "seed 2", "seed 3"]


def write_inverted(path, G, ids) -> torch.Tensor:
    """A gankit-invert-like dataset: image_id + wp rows."""
    ws = torch.randn(len(ids), G.num_ws, G.w_dim, generator=torch.Generator().manual_seed(4))
    field, column = wplus_column(ws.numpy(), "wp")
    table = pa.Table.from_arrays([pa.array(ids), column],
                                 schema=pa.schema([pa.field("image_id", pa.string()), field]))
    path.mkdir()
    pq.write_table(table, str(path / "part-00000.parquet"))
    return ws


def test_inverted_rows_as_sources(model_files, tmp_path):
    G = zoo.load_generator(model_files["model"]).eval()
    ws = write_inverted(tmp_path / "inv", G, ["a", "b", "c"])
    cfg = InterpolateConfig(out=str(tmp_path / "o"), model=model_files["model"],
                            latents=str(tmp_path / "inv"), ids=["c", "a"], space="w",
                            steps=3, device="cpu", animation="webp", scale=1)
    doc = run_interpolate(cfg)
    assert doc["space"] == "wp" and doc["sources"] == ["c", "a"]
    np.testing.assert_array_equal(np.asarray(doc["latents"], np.float32), ws[[2, 0]].numpy())
    webp = Image.open(io.BytesIO((tmp_path / "o" / "interpolate.webp").read_bytes()))
    assert webp.n_frames == 3
    webp.seek(0)
    np.testing.assert_array_equal(np.asarray(webp.convert("RGB")), render(G, ws[2:3])[0])
    with pytest.raises(ValueError, match="no row with image_id zz"):
        run_interpolate(InterpolateConfig(**{**cfg.__dict__, "ids": ["a", "zz"]}))
    with pytest.raises(ValueError, match="space"):
        InterpolateConfig(**{**cfg.__dict__, "space": "z"}).validate()


def test_bad_flags_give_one_sentence(model_files, tmp_path, capsys):
    assert main(["interpolate", "--seeds", "1", "--out", str(tmp_path)]) == 2
    assert "seeds must name at least two sources" in capsys.readouterr().err
    assert main(["style-mix", "--row-seeds", "1", "--col-seeds", "2", "--layers", "9",
                 "--model", model_files["model"], "--out", str(tmp_path),
                 "--device", "cpu"]) == 2
    assert "layers must be ws indices" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["interpolate", "--seeds", "1,x", "--out", str(tmp_path)])
