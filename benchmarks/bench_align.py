"""Face alignment throughput on one CPU thread: photos aligned per second
(gankit.faces.alignment) on scikit-image's astronaut (512 x 512, one face of ~90 px; the HOG
detector with one upsampling also fires on a patch of the suit), split into its steps, side by
side in one run:

    detect     HOG detection (1 upsampling) + 68 landmarks of every box
    warp       the FFHQ crop / pad / warp at `transform_size` = 4 x resolution + resize
    align      both, as `gankit align` does per photo (+ PNG encode)

The align stage runs one such loop per actor (one CPU each), so its ceiling is
actors x align photos/s.

    python benchmarks/bench_align.py                  # resolutions 256 and 1024
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def rate(fn, seconds: float) -> float:
    fn()                                           # warm: model files read, caches filled
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    args = p.parse_args()
    import torch
    torch.set_num_threads(1)
    from gankit.faces import alignment as faces
    from gankit.images import decode_image, encode_png
    root = importlib.util.find_spec("skimage").submodule_search_locations[0]
    with open(os.path.join(root, "data", "astronaut.png"), "rb") as f:
        data = f.read()
    photo = decode_image(data)
    quad = faces.ffhq_quad(faces.choose_faces(faces.detect_faces(photo))[0].landmarks)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"photo {photo.shape[1]}x{photo.shape[0]}")
    detect = rate(lambda: faces.detect_faces(decode_image(data)), args.seconds)
    print(f"detect + landmarks: {detect:.1f} photos/s")
    for r in args.resolutions:
        warp = rate(lambda: faces.align_quad(photo, quad, r), args.seconds)
        full = rate(lambda: [encode_png(a.image) for a in
                             faces.align_faces(decode_image(data), r)], args.seconds)
        print(f"resolution {r}: warp {warp:.2f}/s, align (decode, detect, warp, PNG) "
              f"{full:.2f} photos/s per CPU; detect is {full / detect:.0%} of its time")


if __name__ == "__main__":
    main()
