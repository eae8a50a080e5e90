"""Issue #27: the commands added since the last round, under hostile input. Each case ends in
one sentence (or an error record) instead of a traceback, an abort or a leak."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from gankit.images import decode_image
from jobs.config import ConfigError
from jobs.stages.interpolate import MAX_FIGURE_CELLS, InterpolateConfig, StyleMixConfig
from jobs.runtime.progress import Progress

GANKIT = [sys.executable, "-m", "jobs.commands.cli"]


def test_interpolate_refuses_a_figure_it_cannot_hold_before_allocating(tmp_path):
    cfg = InterpolateConfig(seeds=[1, 2], steps=100_000_000, out=str(tmp_path))
    with pytest.raises(ConfigError, match=r"steps would make a figure of 100,000,000 images"):
        cfg.validate()
    InterpolateConfig(seeds=[1, 2], steps=MAX_FIGURE_CELLS, out=str(tmp_path)).validate()


def test_style_mix_refuses_a_grid_it_cannot_hold(tmp_path):
    seeds = list(range(40))
    cfg = StyleMixConfig(row_seeds=seeds, col_seeds=seeds, out=str(tmp_path))
    with pytest.raises(ConfigError, match=r"row_seeds .* 1,681 images \(41 rows x 41 columns"):
        cfg.validate()


def test_the_command_line_says_the_limit_in_one_sentence(tmp_path):
    run = subprocess.run(GANKIT + ["interpolate", "--seeds", "1,2", "--steps", "100000000",
                                   "--out", str(tmp_path)], capture_output=True, text=True,
                         env=dict(os.environ, RAY_AUTH_MODE="disabled"))
    assert run.returncode == 2, run.stderr
    assert f"at most {MAX_FIGURE_CELLS:,} fit one figure" in run.stderr
    assert "Traceback" not in run.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("data, kind", [
    (b"root:x:0:0:root:/root:/bin/bash\n" * 40, "not an image format Pillow reads"),
    (b"\x89PNG\r\n\x1a\n" + b"secret-bytes" * 4, "a damaged or truncated PNG"),
    (b"\xff\xd8\xff\xe0" + b"secret-bytes" * 4, "a damaged or truncated JPEG"),
])
def test_a_decode_error_names_what_the_file_is_not_what_it_holds(data, kind):
    with pytest.raises(ValueError) as e:
        decode_image(data)
    message = str(e.value)
    assert kind in message and f"{len(data)} bytes" in message
    assert "root" not in message and "secret" not in message and "0x" not in message


def test_convert_accepts_toy_like_every_other_command(tmp_path):
    from jobs.commands.cli import main
    assert main(["convert", "toy", str(tmp_path / "toy")]) == 0
    assert (tmp_path / "toy" / "model.safetensors").exists()


def test_an_inversion_in_flight_is_not_shown_as_zero_rows_per_second():
    progress = Progress("invert", "run", {0: 8})
    progress.t0 = time.time()
    progress.status = "images 0-7 step 100/100, loss 0.1"
    line = progress.line()
    assert "0.0 rows/s" not in line
    assert "none written yet" in line and "step 100/100" in line
    progress.done = 4
    assert "rows/s" in progress.line()


def npy_with_header(shape: tuple, payload: bytes) -> bytes:
    """A .npy file whose header declares `shape` (float32) over `payload`."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + payload


@pytest.mark.parametrize("data, said", [
    (b"", "is not a .npy file (0 bytes"),
    (b"hello", "is not a .npy file (5 bytes"),
    (npy_with_header((1, 10**12), b"\0" * 16),
     "its header declares (1, 1000000000000) of float32 (4,000,000,000,000 bytes), the "
     "file holds 16"),
])
def test_directions_import_refuses_an_empty_foreign_or_lying_npy_in_one_sentence(data, said):
    """An empty .npy was an EOFError traceback; a header claiming 10^12 values made numpy
    try to allocate 3.6 TiB."""
    from gankit.loading.published import DirectionFileError, read_direction_file
    with pytest.raises(DirectionFileError) as e:
        read_direction_file(data, "x.npy")
    assert said in str(e.value)
    ok = npy_with_header((1, 4), np.ones(4, np.float32).tobytes())
    assert read_direction_file(ok, "ok.npy")[1].shape == (1, 4)
