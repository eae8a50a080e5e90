"""`gankit directions`: SeFa / GANSpace directions, auto-annotated, with a strength-sweep grid
per direction. A thin layer over gankit.latent.directions (no Ray: it is one model on one device).

`gankit directions import FILE ...` brings published directions into a boundary index
instead (jobs.stages.directions_import); `gankit directions --method ...` is unchanged."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Optional

from jobs.config import option, override, require
from jobs.options import LocalDeviceOptions, ModelOptions

STRENGTHS = (-3, -2, -1, 0, 1, 2, 3)   # in units of the direction's std


@dataclass
class DirectionsJobConfig(ModelOptions, LocalDeviceOptions):
    classifier: str = option("toy", "classifier for the annotation ('toy', TorchScript, entry "
                                    "point); 'none' to skip the annotation")
    method: str = option("sefa", "sefa: eigenvectors of the style affines' weights (closed "
                                 "form); pca: GANSpace's principal components of sampled w",
                         choices=("sefa", "pca"))
    top: int = option(10, "directions kept")
    layers: str = option("all", "'all' or ws range 'start:stop'")
    torgb: str = option("last", "SeFa on a skip generator: the convolutions' affines plus the "
                                "last torgb's (genforce/sefa's rule), or every torgb's too",
                        choices=("last", "all"))
    samples: int = option(10000, "sampled w for PCA and for each direction's std")
    annotate_samples: int = option(64, "K edited samples")
    sigma: float = option(3.0, "annotation edit, in stds")
    threshold: float = option(0.2, "min mean change of probability to name a direction")
    grid_seeds: int = option(4, "rows of each sweep grid")
    seed: int = option(0, "the samples' seed")
    device: str = override(LocalDeviceOptions, "device", "cpu")
    # not argparse's `required`: `directions import` has its own --out
    out: Optional[str] = option(None, "output folder (local path or fsspec URL); required")

    def validate(self) -> None:
        require(bool(self.out), "out", "must be an output folder (local path or fsspec URL)")

    def directions_config(self, num_ws: int):
        from gankit.latent.directions import AnnotateConfig, DirectionsConfig, parse_layers
        ann = AnnotateConfig(k=self.annotate_samples, sigma=self.sigma,
                             threshold=self.threshold, seed=self.seed)
        return DirectionsConfig(method=self.method, top=self.top,
                                layers=parse_layers(self.layers, num_ws), torgb=self.torgb,
                                n_samples=self.samples, seed=self.seed, annotate=ann)


def _write(url: str, data: bytes) -> None:
    import fsspec
    with fsspec.open(url, "wb") as f:
        f.write(data)


def write_grids(G, result, out: str, seeds: int, seed: int) -> list:
    """One PNG per direction: rows = samples, columns = STRENGTHS * std."""
    from gankit.images import make_grid, save_png, to_uint8, upscale
    from gankit.latent.directions import sweep_images
    paths = []
    for i, (d, s) in enumerate(zip(result.vectors, result.std)):
        images = to_uint8(sweep_images(G, d, s, STRENGTHS, seeds, result.layers, seed))
        grid = make_grid(images, ncols=len(STRENGTHS))
        path = f"{out}/direction_{i:02d}.png"
        save_png(path, upscale(grid, 4 if grid.shape[0] < 512 else 1))
        paths.append(path)
    return paths


def directions_command(cfg: DirectionsJobConfig) -> int:
    import numpy as np

    from gankit.latent.directions import find_directions
    from gankit.loading import zoo

    G = zoo.load_generator(cfg.model, device=cfg.device).eval()
    C = None if cfg.classifier == "none" else \
        zoo.load_classifier(cfg.classifier, device=cfg.device).eval()
    result = find_directions(G, C, cfg.directions_config(G.num_ws))
    out = cfg.out.rstrip("/")
    buf = io.BytesIO()
    np.save(buf, result.vectors.astype(np.float32))                       # [K, w_dim]
    _write(f"{out}/directions.npy", buf.getvalue())
    grids = write_grids(G, result, out, cfg.grid_seeds, cfg.seed)
    doc = result.to_json()
    doc.update(torgb=cfg.torgb, model=cfg.model, classifier=cfg.classifier,
               strengths=list(STRENGTHS),
               vectors="directions.npy")
    for entry, path in zip(doc["directions"], grids):
        entry["grid"] = path.rsplit("/", 1)[-1]
    _write(f"{out}/directions.json", json.dumps(doc, indent=2).encode())
    for entry in doc["directions"]:
        print(f"{entry['index']:3d}  {entry.get('name', '')}")
    print(f"wrote {out}/directions.json")
    return 0
