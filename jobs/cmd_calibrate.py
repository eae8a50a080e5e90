"""`gankit calibrate-gan`: refit a generator's mapping network so that its samples carry the
data's attribute rates (gankit.train.calibrate), and write the result in the native format."""
from __future__ import annotations

import json
from dataclasses import dataclass

TOY_TRAINING_IMAGES = 200000   # the toy generator's reals: `gankit train-gan` defaults, seed 1
TOY_TRAINING_SEED = 1


@dataclass
class CalibrateJobConfig:
    generator: str = "toy"         # 'toy' or a checkpoint path
    classifier: str = "toy"        # 'toy' or a TorchScript classifier
    data_labels: str = "toy"       # 'toy' (the toy generator's training renders) or the URL of a
                                   # `gankit label` dataset of real images (logit_<attr> columns)
    out: str = ""                  # output generator directory (native format)
    target_joint: str = "data"     # 'data' or 'generated' (gankit.train.calibrate)
    bank_size: int = 60000
    steps: int = 4000
    moment_weight: float = 1000.0  # label moment term (gankit.train.calibrate)
    cell_weight: float = 0.0       # label cell KL term, 0 = off
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        from jobs.config import choice, require
        require(bool(self.out), "out", "must be the output generator directory")
        require(self.bank_size >= 1000, "bank_size", f"must be >= 1000 (got {self.bank_size})")
        require(self.steps >= 1, "steps", f"must be >= 1 (got {self.steps})")
        require(self.moment_weight >= 0 and self.cell_weight >= 0, "moment_weight",
                "the term weights must be >= 0")
        choice(self.target_joint, ("data", "generated"), "target_joint")


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate-gan", help="refit a generator's mapping so its "
                              "attribute rates match the data's (MODELS.md)")
    p.add_argument("--generator", default="toy", help="'toy' or a checkpoint path")
    p.add_argument("--classifier", default="toy", help="'toy' or a TorchScript classifier")
    p.add_argument("--data-labels", default="toy", help="'toy' (true labels of the toy "
                   "training renders) or a `gankit label` dataset URL of real images")
    p.add_argument("--out", required=True, help="write the calibrated generator here")
    p.add_argument("--target-joint", choices=("data", "generated"), default="data",
                   help="label joint raked to the data's rates: the data's (its correlations "
                        "where the generator can draw them) or the generator's own")
    p.add_argument("--bank-size", type=int, default=60000, help="samples drawn and labelled")
    p.add_argument("--steps", type=int, default=4000, help="refit steps in W")
    p.add_argument("--moment-weight", type=float, default=1000.0,
                   help="weight of the label moment term (mean and covariance of the heads)")
    p.add_argument("--cell-weight", type=float, default=0.0,
                   help="weight of the KL term on label cells (keeps rare cells), 0 = off")
    p.add_argument("--seed", type=int, default=0, help="seeds the bank and the refit")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args) -> None:
    from jobs.runtime import resolve_device
    cfg = CalibrateJobConfig(args.generator, args.classifier, args.data_labels, args.out,
                             args.target_joint, args.bank_size, args.steps, args.moment_weight,
                             args.cell_weight, args.seed, resolve_device(args.device or "auto"))
    print(json.dumps(run_calibrate(cfg), indent=2))


def data_labels(spec: str, attribute_names: list):
    """Boolean labels [N, A] of the data, columns in the classifier's attribute order."""
    import numpy as np
    if spec == "toy":
        from gankit import toyfaces
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

    from gankit import zoo
    from gankit.checkpoints import save_generator
    from gankit.train.calibrate import CalibrateConfig, calibrate_generator
    cfg.validate()
    t0 = time.monotonic()
    G = zoo.load_generator(cfg.generator, device=cfg.device)
    C = zoo.load_classifier(cfg.classifier, device=cfg.device)
    labels = data_labels(cfg.data_labels, C.attribute_names)
    calibration = CalibrateConfig(bank_size=cfg.bank_size, steps=cfg.steps, seed=cfg.seed,
                                  target_joint=cfg.target_joint, moment_weight=cfg.moment_weight,
                                  cell_weight=cfg.cell_weight, device=cfg.device)
    G, info = calibrate_generator(G, C, labels, calibration)
    source = {"calibrated_from": cfg.generator, "classifier": cfg.classifier,
              "data_labels": cfg.data_labels, "target_joint": cfg.target_joint,
              "bank_size": cfg.bank_size, "steps": cfg.steps, "moment_weight": cfg.moment_weight,
              "cell_weight": cfg.cell_weight, "seed": cfg.seed}
    save_generator(G.cpu(), cfg.out, source=source)
    return {"out": cfg.out, "attributes": list(C.attribute_names), **info,
            "seconds": round(time.monotonic() - t0, 1)}
