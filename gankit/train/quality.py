"""Quality gates of the bundled toy model, measured the same way every time.

`python -m gankit.train.quality` (there is no `gankit` subcommand for it) prints a JSON report
and writes the sample grid and truncation sweep PNGs. MODELS.md records its output.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from gankit.images import make_grid, save_png, to_uint8, upscale
from gankit.latent.logits import sigmoid
from gankit.latent.metrics import frechet_distance
from gankit.train.classifier import predict_logits
from gankit.train.toy import attribute_names, render_dataset

EVAL_SEED = 10_000_019  # held-out renders: never used for training (training seeds are small)


@torch.no_grad()
def generate(G, n: int, seed: int, psi: float = 1.0, batch_size: int = 500):
    """uint8 images [n, H, W, 3] and w [n, w_dim] for z ~ N(0, I) drawn from `seed`."""
    gen = torch.Generator().manual_seed(seed)
    images, ws = [], []
    for i in range(0, n, batch_size):
        z = torch.randn(min(batch_size, n - i), G.z_dim, generator=gen)
        w = G.mapping(z, None, truncation_psi=psi)
        images.append(to_uint8(G.synthesis(w, noise_mode="const")))
        ws.append(w[:, 0].numpy())
    return np.concatenate(images), np.concatenate(ws)


@torch.no_grad()
def features(classifier, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    from gankit.images import from_uint8
    return np.concatenate([classifier.features(from_uint8(images[i:i + batch_size])).numpy()
                           for i in range(0, len(images), batch_size)])


def classifier_gate(classifier, n: int) -> dict:
    images, labels = render_dataset(n, EVAL_SEED, classifier.resolution)
    pred = predict_logits(classifier, images) > 0
    acc = (pred == labels).mean(axis=0)
    return {name: round(float(a), 4) for name, a in zip(attribute_names(), acc)}


def generator_gates(G, classifier, n: int, true_rates: np.ndarray) -> dict:
    images, w = generate(G, n, seed=1)
    logits = predict_logits(classifier, images)                    # [n, A]
    prob = sigmoid(logits)                                          # [n, A] float64
    rates = (prob > 0.5).mean(axis=0)
    confident = np.maximum(prob, 1 - prob) >= 0.9                   # [n, A]
    return {
        "positive_rate": dict(zip(attribute_names(), np.round(rates, 4).tolist())),
        "true_rate": dict(zip(attribute_names(), np.round(true_rates, 4).tolist())),
        "max_rate_gap": round(float(np.abs(rates - true_rates).max()), 4),
        "confident_share_per_attribute": dict(zip(attribute_names(),
                                                  np.round(confident.mean(axis=0), 4).tolist())),
        "confident_share_all_attributes": round(float(confident.all(axis=1).mean()), 4),
        "w_separability": w_separability(w, logits),
    }


def w_separability(w: np.ndarray, logits: np.ndarray, val_fraction: float = 0.3) -> dict:
    """Validation accuracy of a linear SVM on w predicting the classifier label, two ways:
    all samples labelled logit > 0 (70/30 split), and InterFaceGAN's extremes (top/bottom
    10% by logit, labelled by rank; the paper's 2% of 500K is 10K a side, 10% of 10K keeps
    1K a side)."""
    from sklearn.svm import LinearSVC

    from gankit.latent.boundaries import fit_boundary
    n_train = int(len(w) * (1 - val_fraction))
    out = {"all_samples": {}, "top_bottom_10pct": {}}
    for j, name in enumerate(attribute_names()):
        y = logits[:, j] > 0
        svm = LinearSVC(C=1.0, dual=False).fit(w[:n_train], y[:n_train])
        out["all_samples"][name] = round(float((svm.predict(w[n_train:]) == y[n_train:]).mean()), 4)
        b = fit_boundary(w, logits[:, j], name, "w", fraction=0.1, seed=0)
        out["top_bottom_10pct"][name] = round(float(b.metrics["val_accuracy"]), 4)
    return out


def frechet_gate(G, classifier, n: int) -> dict:
    gen_images, _ = generate(G, n, seed=2)
    real_a, _ = render_dataset(n, EVAL_SEED + 1, G.img_resolution)
    real_b, _ = render_dataset(n, EVAL_SEED + 2, G.img_resolution)
    fa, fb, fg = (features(classifier, x) for x in (real_a, real_b, gen_images))
    return {"generated_vs_rendered": round(frechet_distance(fg, fa), 4),
            "rendered_vs_rendered": round(frechet_distance(fb, fa), 4)}


def write_grids(G, out_dir: str) -> list:
    os.makedirs(out_dir, exist_ok=True)
    images, _ = generate(G, 64, seed=3)
    paths = [os.path.join(out_dir, "toy_samples.png")]
    save_png(paths[0], upscale(make_grid(images, 8), 4))
    rows = [generate(G, 8, seed=4, psi=psi)[0] for psi in (1.0, 0.7, 0.5, 0.0)]
    paths.append(os.path.join(out_dir, "toy_truncation.png"))
    save_png(paths[1], upscale(make_grid(np.concatenate(rows), 8), 4))
    return paths


def evaluate(generator: str = "toy", classifier: str = "toy", n_classifier: int = 5000,
             n_generator: int = 10000, n_frechet: int = 5000, grids_dir: str = None) -> dict:
    from gankit.loading.zoo import load_classifier, load_generator
    t0 = time.time()
    clf = load_classifier(classifier)
    report = {"classifier_accuracy": classifier_gate(clf, n_classifier)}
    if generator:
        G = load_generator(generator)
        _, true_labels = render_dataset(50000, EVAL_SEED + 3, G.img_resolution)
        report["generator"] = generator_gates(G, clf, n_generator, true_labels.mean(axis=0))
        report["frechet_feature_distance"] = frechet_gate(G, clf, n_frechet)
        if grids_dir:
            report["grids"] = write_grids(G, grids_dir)
    report["seconds"] = round(time.time() - t0, 1)
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generator", default="toy", help="'' to evaluate the classifier only")
    p.add_argument("--classifier", default="toy")
    p.add_argument("--grids-dir", default=None, help="write sample grid + truncation sweep here")
    p.add_argument("--n-generator", type=int, default=10000)
    a = p.parse_args(argv)
    print(json.dumps(evaluate(a.generator, a.classifier, n_generator=a.n_generator,
                              grids_dir=a.grids_dir), indent=2))


if __name__ == "__main__":
    main()
