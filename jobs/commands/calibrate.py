"""`gankit calibrate-gan`: refit a generator's mapping network so that its samples carry the
data's attribute rates (gankit.train.calibrate), and write the result in the native format."""
from __future__ import annotations

import json
from dataclasses import dataclass

from jobs.config import check_choices, option, require
from jobs.options import LocalDeviceOptions

TOY_TRAINING_IMAGES = 200000   # the toy generator's reals: `gankit train-gan` defaults, seed 1
TOY_TRAINING_SEED = 1


@dataclass
class CalibrateJobConfig(LocalDeviceOptions):
    generator: str = option("toy", "'toy' or a checkpoint path")
    classifier: str = option("toy", "'toy' or a TorchScript classifier")
    data_labels: str = option("toy", "'toy' (true labels of the toy generator's training "
                                     "renders) or a `gankit label` dataset URL of real "
                                     "images (logit_<attr> columns)")
    out: str = option("", "write the calibrated generator (native format) here",
                      required=True)
    target_joint: str = option("data", "label joint raked to the data's rates: the data's "
                                       "(its correlations where the generator can draw them) "
                                       "or the generator's own (gankit.train.calibrate)",
                               choices=("data", "generated"))
    bank_size: int = option(60000, "samples drawn and labelled")
    steps: int = option(4000, "refit steps in W")
    moment_weight: float = option(1000.0, "weight of the label moment term (mean and "
                                          "covariance of the heads)")
    cell_weight: float = option(0.0, "weight of the KL term on label cells (keeps rare "
                                     "cells), 0 = off")
    seed: int = option(0, "seeds the bank and the refit")

    def validate(self) -> None:
        require(bool(self.out), "out", "must be the output generator directory")
        require(self.bank_size >= 1000, "bank_size", f"must be >= 1000 (got {self.bank_size})")
        require(self.steps >= 1, "steps", f"must be >= 1 (got {self.steps})")
        require(self.moment_weight >= 0 and self.cell_weight >= 0, "moment_weight",
                "the term weights must be >= 0")
        check_choices(self)


def calibrate_command(cfg: CalibrateJobConfig) -> None:
    """`gankit calibrate-gan`: run, then print what was measured as JSON."""
    print(json.dumps(run_calibrate(cfg), indent=2))


def data_labels(spec: str, attribute_names: list):
    """Boolean labels [N, A] of the data, columns in the classifier's attribute order."""
    import numpy as np
    if spec == "toy":
        from gankit.toy import toyfaces
        if list(attribute_names) != list(toyfaces.ATTRIBUTE_NAMES):
            raise ValueError("--data-labels toy needs the toy classifier's attributes "
                             f"{list(toyfaces.ATTRIBUTE_NAMES)}, got {list(attribute_names)}")
        # the renders' labels come from their factors alone: nothing needs drawing
        return toyfaces.label_matrix(toyfaces.sample_factors(TOY_TRAINING_IMAGES, TOY_TRAINING_SEED))
    from jobs.storage import dataset_rows, open_store, read_table
    columns = [f"logit_{a}" for a in attribute_names]
    store = open_store(spec, must_exist=True)
    schema = dataset_rows(store)[1]
    missing = [c for c in columns if schema is None or c not in schema.names]
    if missing:
        raise ValueError(f"{spec}: no column {', '.join(missing)}; label the real images with "
                         "`gankit label` and this classifier first")
    table = read_table(store, columns)                 # the logits only, not the images
    logits = np.stack([table.column(c).to_numpy(zero_copy_only=False) for c in columns], axis=1)
    if not np.isfinite(logits).all():
        raise ValueError(f"{spec}: {int((~np.isfinite(logits)).any(axis=1).sum())} rows have "
                         "non-finite logits")
    return logits > 0


def run_calibrate(cfg: CalibrateJobConfig) -> dict:
    """Calibrate cfg.generator, save it to cfg.out, return what was measured."""
    import time

    from gankit.loading import zoo
    from gankit.loading.checkpoints import save_generator
    from gankit.train.calibrate import CalibrateConfig, calibrate_generator
    from jobs.runtime import resolve_device
    cfg.validate()
    t0 = time.monotonic()
    device = resolve_device(cfg.device)
    G = zoo.load_generator(cfg.generator, device=device)
    C = zoo.load_classifier(cfg.classifier, device=device)
    labels = data_labels(cfg.data_labels, C.attribute_names)
    calibration = CalibrateConfig(bank_size=cfg.bank_size, steps=cfg.steps, seed=cfg.seed,
                                  target_joint=cfg.target_joint, moment_weight=cfg.moment_weight,
                                  cell_weight=cfg.cell_weight, device=device)
    G, info = calibrate_generator(G, C, labels, calibration)
    source = {"calibrated_from": cfg.generator, "classifier": cfg.classifier,
              "data_labels": cfg.data_labels, "target_joint": cfg.target_joint,
              "bank_size": cfg.bank_size, "steps": cfg.steps, "moment_weight": cfg.moment_weight,
              "cell_weight": cfg.cell_weight, "seed": cfg.seed}
    save_generator(G.cpu(), cfg.out, source=source)
    return {"out": cfg.out, "attributes": list(C.attribute_names), **info,
            "seconds": round(time.monotonic() - t0, 1)}
