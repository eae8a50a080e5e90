"""`gankit run FILE`: a pipeline from a YAML or JSON config (jobs.stages.pipeline)."""
from __future__ import annotations

from dataclasses import dataclass

from jobs.config import option


@dataclass
class RunConfig:
    config: str = option("", "pipeline config file (YAML or JSON)", positional=True)

    def validate(self) -> None:
        """load_config checks the file."""


def cmd_run(cfg: RunConfig) -> None:
    from jobs.stages.pipeline import load_config, run_pipeline
    run_pipeline(load_config(cfg.config))
