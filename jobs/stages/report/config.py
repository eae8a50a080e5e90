"""The report stage's config: every option declared once with jobs.config.option, so the
`gankit report` flags, the pipeline's `report:` section and their checks come from it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from jobs.config import option, override, require
from jobs.options import LocalDeviceOptions, MODEL_HELP, ModelOptions, StorageOptions


@dataclass
class ReportConfig(ModelOptions, StorageOptions, LocalDeviceOptions):
    fit: str = option("", "fit output URL (boundaries.json)", required=True)
    edits: str = option("", "edit output URL (edit job parts, to_distance or shift)")
    samples: str = option("", "sample dataset URL for the correlation (default: skip it)")
    out: str = option("", "output folder: report.json, report.html, figures/", required=True)
    edit_strength: Optional[float] = option(None, "the |strength| the report scores "
                                                  "(default: the largest edited)")
    grid_samples: int = option(4, "sample ids (rows) per edit grid")
    correlation_rows: int = option(20000, "sample rows read for the correlation matrix")
    title: str = option("gankit report", "the page's title")
    latent_metrics: dict = option({}, "separability {z, w}, ppl {z, w}, directions [...] "
                                      "computed elsewhere (the demo); each missing key is "
                                      "null in report.json", flag=False)
    metrics: str = option("", "a `gankit metrics --out` URL (separability and PPL, Z vs W): "
                              "fills the keys latent_metrics leaves empty")
    model: Optional[str] = override(ModelOptions, "model", None, help=MODEL_HELP + ", for "
                                    "the directions (default: the samples' model)")
    classifier: Optional[str] = option(None, "classifier for real images and the directions' "
                                             "names (default: the samples' classifier)")
    real: str = option("", "real images for the correlation: 'toy' renders or a Parquet URL "
                           "with an image column (default: skip)")
    real_rows: int = option(2000, "real images read for the correlation section")
    real_seed: int = option(0, "the toy renders' seed (rows 0 .. real_rows-1)")
    image_column: str = option("image", "image column of a real Parquet dataset")
    directions: int = option(0, "top SeFa and GANSpace PCA directions, annotated, with grids "
                                "(0 = skip)")
    direction_samples: int = option(16, "samples edited to annotate each direction")
    direction_w_samples: int = option(2000, "sampled w for PCA and each direction's std")
    grid_seeds: int = option(3, "rows of each direction's sweep grid")
    inversion: list = option([], "a `gankit eval-inversion --out` JSON file (repeatable)",
                             repeat=True)
    device: str = override(LocalDeviceOptions, "device", "cpu")

    def validate(self) -> None:
        require(bool(self.fit), "fit", "must be the URL of a fit output (boundaries.json)")
        require(bool(self.out), "out", "must be an output URL (a local path or s3://...)")
        require(self.edit_strength is None or self.edit_strength > 0, "edit_strength",
                f"must be > 0 or null (got {self.edit_strength})")
        require(self.grid_samples >= 0, "grid_samples", "must be >= 0")
        require(self.correlation_rows >= 0, "correlation_rows", "must be >= 0")
        require(self.real_rows >= 2, "real_rows", f"must be >= 2 (got {self.real_rows})")
        require(self.directions >= 0, "directions", f"must be >= 0 (got {self.directions})")
        require(self.direction_samples >= 1, "direction_samples", "must be >= 1")
        require(self.direction_w_samples >= 2, "direction_w_samples", "must be >= 2")
        require(self.grid_seeds >= 1, "grid_seeds", "must be >= 1")
        require(all(isinstance(u, str) and u for u in self.inversion), "inversion",
                "must be a list of eval-inversion JSON URLs")
