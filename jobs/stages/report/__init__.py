"""The report stage (driver): fit output + edit output (+ samples) -> report.json,
report.html and figures/ under `out`.

    config.py   ReportConfig: every option once (jobs.config.option)
    reading.py  what is read from storage, streaming part by part, keeping small arrays:
                the fit's index and boundaries; the logit columns of the edits at
                +-edit_strength and the images of the first `grid_samples` sample ids; the
                edited samples' logits before editing (from the latents dataset the edit
                job's manifest names); the first `correlation_rows` rows of `samples`
    build.py    the section records of gankit.report built from what was read; optional
                sections computed in the driver on one device (all small): `real` images'
                attribute correlation beside the generated one ('toy' renders, with their
                true labels, or a Parquet dataset); `directions`: the top SeFa and GANSpace
                PCA directions of `model`, named by rescoring with `classifier`, with grids;
                `inversion`: `gankit eval-inversion --out` JSON files, one row per run
    run.py      run_report: build, warn, write; `gankit report`
The edit set is small by design (a few hundred samples x boundaries x strengths).
"""
from jobs.stages.report.config import ReportConfig
from jobs.stages.report.reading import same_dataset
from jobs.stages.report.run import build_report, run_report

__all__ = ["ReportConfig", "build_report", "run_report", "same_dataset"]
