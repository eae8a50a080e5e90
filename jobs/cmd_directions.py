"""`gankit directions`: SeFa / GANSpace directions, auto-annotated, with a strength-sweep grid
per direction. A thin layer over gankit.directions (no Ray: it is one model on one device).

`gankit directions import FILE ...` brings published directions into a boundary index
instead (jobs.directions_import); `gankit directions --method ...` is unchanged."""
from __future__ import annotations

import argparse
import io
import json

from jobs.options import MODEL_HELP

STRENGTHS = (-3, -2, -1, 0, 1, 2, 3)   # in units of the direction's std


def directions_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="toy", help=MODEL_HELP)
    p.add_argument("--classifier", default="toy",
                   help="classifier for the annotation ('toy', TorchScript, entry point); "
                        "'none' to skip the annotation")
    p.add_argument("--method", default="sefa", choices=("sefa", "pca"),
                   help="sefa: eigenvectors of the style affines' weights (closed form); "
                   "pca: GANSpace's principal components of sampled w")
    p.add_argument("--top", type=int, default=10, help="directions kept")
    p.add_argument("--layers", default="all", help="'all' or ws range 'start:stop'")
    p.add_argument("--torgb", default="last", choices=("last", "all"),
                   help="SeFa on a skip generator: the convolutions' affines plus the last "
                        "torgb's (genforce/sefa's rule), or every torgb's too")
    p.add_argument("--samples", type=int, default=10000,
                   help="sampled w for PCA and for each direction's std")
    p.add_argument("--annotate-samples", type=int, default=64, help="K edited samples")
    p.add_argument("--sigma", type=float, default=3.0, help="annotation edit, in stds")
    p.add_argument("--threshold", type=float, default=0.2,
                   help="min mean change of probability to name a direction")
    p.add_argument("--grid-seeds", type=int, default=4, help="rows of each sweep grid")
    p.add_argument("--seed", type=int, default=0, help="the samples' seed")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", help="output folder (local path or fsspec URL); required")
    p.set_defaults(directions_parser=p)
    actions = p.add_subparsers(dest="directions_action", metavar="{import}")
    register_import(actions)


def register_import(actions: argparse._SubParsersAction) -> None:
    """`gankit directions import FILE --name NAME --space z|w --out INDEX`."""
    from jobs.config import HelpFormatter, add_flags, fields_in_order, from_args
    from jobs.directions_import import DirectionImportConfig, run_import
    text = ("import published directions (InterFaceGAN .npy, e4e/pSp .pt, GANSpace PCA .pt) "
            "into a boundary index")
    p = actions.add_parser("import", help=text, description=text[:1].upper() + text[1:] + ".",
                           formatter_class=HelpFormatter)
    file_field = next(f for f in fields_in_order(DirectionImportConfig) if f.name == "file")
    p.add_argument("file", help=file_field.metadata["help"])
    add_flags(p, DirectionImportConfig)
    for flag, help in (("--quiet", "only warnings and errors"), ("--verbose", "more detail")):
        p.add_argument(flag, action="store_true", help=help)

    def command(args: argparse.Namespace) -> int:
        run_import(from_args(DirectionImportConfig, args))
        return 0
    p.set_defaults(func=command)


def _config(args: argparse.Namespace, num_ws: int):
    from gankit.directions import AnnotateConfig, DirectionsConfig, parse_layers
    ann = AnnotateConfig(k=args.annotate_samples, sigma=args.sigma,
                         threshold=args.threshold, seed=args.seed)
    return DirectionsConfig(method=args.method, top=args.top,
                            layers=parse_layers(args.layers, num_ws), torgb=args.torgb,
                            n_samples=args.samples, seed=args.seed, annotate=ann)


def _write(url: str, data: bytes) -> None:
    import fsspec
    with fsspec.open(url, "wb") as f:
        f.write(data)


def write_grids(G, result, out: str, seeds: int, seed: int) -> list:
    """One PNG per direction: rows = samples, columns = STRENGTHS * std."""
    from gankit.directions import sweep_images
    from gankit.images import make_grid, save_png, to_uint8, upscale
    paths = []
    for i, (d, s) in enumerate(zip(result.vectors, result.std)):
        images = to_uint8(sweep_images(G, d, s, STRENGTHS, seeds, result.layers, seed))
        grid = make_grid(images, ncols=len(STRENGTHS))
        path = f"{out}/direction_{i:02d}.png"
        save_png(path, upscale(grid, 4 if grid.shape[0] < 512 else 1))
        paths.append(path)
    return paths


def directions_command(args: argparse.Namespace) -> int:
    import numpy as np
    if not args.out:      # not argparse's `required`: `directions import` has its own --out
        args.directions_parser.error("the following arguments are required: --out")

    from gankit import zoo
    from gankit.directions import find_directions

    G = zoo.load_generator(args.model, device=args.device).eval()
    C = None if args.classifier == "none" else \
        zoo.load_classifier(args.classifier, device=args.device).eval()
    result = find_directions(G, C, _config(args, G.num_ws))
    out = args.out.rstrip("/")
    buf = io.BytesIO()
    np.save(buf, result.vectors.astype(np.float32))                       # [K, w_dim]
    _write(f"{out}/directions.npy", buf.getvalue())
    grids = write_grids(G, result, out, args.grid_seeds, args.seed)
    doc = result.to_json()
    doc.update(torgb=args.torgb, model=args.model, classifier=args.classifier,
               strengths=list(STRENGTHS),
               vectors="directions.npy")
    for entry, path in zip(doc["directions"], grids):
        entry["grid"] = path.rsplit("/", 1)[-1]
    _write(f"{out}/directions.json", json.dumps(doc, indent=2).encode())
    for entry in doc["directions"]:
        print(f"{entry['index']:3d}  {entry.get('name', '')}")
    print(f"wrote {out}/directions.json")
    return 0
