"""Pure image helpers: tensor <-> uint8 conversion, image codecs (PNG, JPEG, WebP), grids.

Conventions (NVIDIA's): generator images are float tensors [N, C, H, W] in [-1, 1];
stored images are uint8 arrays [N, H, W, C]. `to_uint8` maps x -> (x * 127.5 + 128)
clamped to [0, 255] and truncated, `from_uint8` maps u -> u / 127.5 - 1, so
`to_uint8(from_uint8(u)) == u` exactly.

Decoded images are always RGB [H, W, 3] uint8, upright (a camera's EXIF orientation is
applied). The rule for other modes (`to_rgb`): grayscale is replicated into three channels;
an alpha channel is composited over white (a transparent pixel becomes white, as on a white
page), then dropped. 32-bit integer or float pixels (TIFF modes I and F) are refused.
"""
from __future__ import annotations

import io
import re
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:   # torch is imported lazily: codec-only workers need not pay for it
    import torch

# Pillow raises several exception types for bad bytes; all mean "not a decodable image".
_DECODE_ERRORS = (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError,
                  SyntaxError, ValueError, EOFError)


def quantize(images: "torch.Tensor") -> "torch.Tensor":
    """[N, C, H, W] float in [-1, 1] -> [N, H, W, C] uint8 on the same device (NVIDIA's
    rounding), contiguous. On a GPU this keeps the 4x larger float images off the host, and
    the interleaving is done there: codecs take the rows as they are, with no strided copy
    (which would hold the GIL) on the CPU."""
    import torch
    if images.ndim != 4:
        raise ValueError(f"images: expected [N, C, H, W], got shape {list(images.shape)}")
    x = torch.mul(images.detach().to(torch.float32), 127.5)             # one new buffer,
    x = x.add_(128).clamp_(0, 255).to(torch.uint8)                      # then in place
    return x.permute(0, 2, 3, 1).contiguous()                           # [N, H, W, C]


def dequantize(u8: "torch.Tensor") -> "torch.Tensor":
    """[N, H, W, C] uint8 tensor -> [N, C, H, W] float32 in [-1, 1], on its device, in the
    channels-last layout of decoded images (`from_uint8` comes here too): convolutions pick
    their kernels by layout, so a classifier returns the same bits on rendered pixels as on
    the PNGs that store them."""
    import torch
    return u8.contiguous().permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1


def to_uint8(images: "torch.Tensor") -> np.ndarray:
    """[N, C, H, W] float in [-1, 1] -> [N, H, W, C] uint8 array (NVIDIA's rounding)."""
    return quantize(images).cpu().numpy()                               # [N, H, W, C]


def downscale(images: "torch.Tensor", size: int) -> "torch.Tensor":
    """[N, C, H, W] -> [N, C, size, size], antialiased (a triangle filter as wide as the
    scale factor, so a 1024 -> 256 downscale averages every source pixel, not 1 in 16)."""
    import torch.nn.functional as F
    if size == images.shape[-1]:
        return images
    if size > images.shape[-1]:
        raise ValueError(f"image_size {size} is larger than the {images.shape[-1]} px images: "
                         f"image_size stores a downscale")
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False)


def from_uint8(images: np.ndarray) -> "torch.Tensor":
    """[N, H, W, C] uint8 -> [N, C, H, W] float32 in [-1, 1]."""
    import torch
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 [N, H, W, C], got {images.dtype} "
                         f"shape {list(images.shape)}")
    return dequantize(torch.from_numpy(np.ascontiguousarray(images)))  # [N, C, H, W]


def check_hwc3(arr: np.ndarray, name: str = "arr") -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 [H, W, 3], got {arr.dtype} "
                         f"shape {list(arr.shape)}")
    return arr


# Formats an image column may hold. JPEG and WebP are lossy: `quality` 1-100 (Pillow's).
IMAGE_FORMATS = ("png", "jpeg", "webp")


def encode_image(arr: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
    """[H, W, 3] uint8 -> PNG (level 1, lossless), JPEG or WebP bytes at `quality`."""
    if fmt == "png":
        return encode_png(arr)
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {fmt!r}")
    buf = io.BytesIO()
    Image.fromarray(check_hwc3(arr)).save(buf, format=fmt.upper(), quality=int(quality))
    return buf.getvalue()


def file_extension(data: bytes) -> str:
    """'png', 'jpg' or 'webp' from encoded bytes' signature ('bin' for anything else)."""
    head = bytes(data[:12]) if data else b""
    if head.startswith(b"\x89PNG"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return "bin"


def encode_png(arr: np.ndarray, compress_level: int = 1) -> bytes:
    """[H, W, 3] uint8 -> PNG bytes. Level 1 is fast; on small images it costs few bytes."""
    buf = io.BytesIO()
    Image.fromarray(check_hwc3(arr)).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def to_rgb(img: np.ndarray, mode: str) -> np.ndarray:
    """An array in Pillow `mode` 'L', 'LA', 'RGB' or 'RGBA' -> [H, W, 3] uint8.

    L replicates the gray level; LA/RGBA composite over white: out = a*c + (1-a)*255.
    """
    img = np.asarray(img)
    if mode == "RGB":
        return img
    if mode in ("L", "LA"):
        gray = img if mode == "L" else img[..., 0]
        alpha = None if mode == "L" else img[..., 1]
        img = np.repeat(gray[..., None], 3, axis=2)                      # [H, W, 3]
        return img if alpha is None else _over_white(img, alpha)
    if mode == "RGBA":
        return _over_white(img[..., :3], img[..., 3])
    raise ValueError(f"mode: to_rgb handles 'L', 'LA', 'RGB', 'RGBA', got {mode!r}")


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float32) / 255                        # [H, W, 1]
    out = rgb.astype(np.float32) * a + 255 * (1 - a)
    return np.round(out).astype(np.uint8)


# Largest image decode_image accepts (8192 x 8192). Pillow only *warns* between its own
# MAX_IMAGE_PIXELS (~89M) and twice that, and would then allocate the whole bitmap: a
# 20-byte PNG header can claim gigabytes. The header's size is checked before decoding.
MAX_PIXELS = 8192 * 8192


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG/... bytes -> [H, W, 3] uint8 RGB. Undecodable bytes, and images of more
    than MAX_PIXELS pixels (decompression bombs), raise ValueError. 16-bit samples keep
    their high byte (65535 -> 255), like 16-bit RGB in Pillow."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise ValueError(f"cannot decode image: expected non-empty bytes, got "
                         f"{type(data).__name__} of length {len(data) if data is not None else 0}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ValueError(f"cannot decode image: {w}x{h} is more than {MAX_PIXELS} "
                                 f"pixels (a decompression bomb?)")
            img.load()
            if img.mode in ("I", "F"):         # no 8-bit reading of 32-bit ints or floats
                raise ValueError(f"cannot decode image: its pixels are 32-bit "
                                 f"{'integers' if img.mode == 'I' else 'floats'} (mode "
                                 f"{img.mode}), which have no 8-bit meaning: convert it to "
                                 f"8-bit RGB first")
            img = ImageOps.exif_transpose(img)  # a camera's orientation tag, applied
            if img.mode in ("I;16", "I;16B", "I;16L"):                # 16-bit grayscale
                gray = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
                return to_rgb(gray, "L")
            if img.mode not in ("L", "LA", "RGB", "RGBA"):
                img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info
                                  else "RGB")
            return to_rgb(np.asarray(img), img.mode)
    except _DECODE_ERRORS as e:
        raise ValueError(f"cannot decode image ({len(data)} bytes, {what_it_is(data)}): "
                         f"{_reason(e)}") from e


# Leading bytes of the formats a photo folder holds: an error names the format, never the
# bytes (a link to a private file must not leak its first line into an error table).
_MAGIC = ((b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def what_it_is(data: bytes) -> str:
    """'a damaged PNG' ... or 'not an image format Pillow reads'; never the bytes."""
    head = bytes(data[:12])
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a damaged or truncated WebP"
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return f"a damaged or truncated {name}"
    return "not an image format Pillow reads"


def _reason(e: Exception) -> str:
    """Pillow's message without the repr of the stream it read (an object address)."""
    return re.sub(r" <_io\.BytesIO object at 0x[0-9a-f]+>", "", str(e)) or type(e).__name__


def make_grid(images: np.ndarray, ncols: int, border: int = 2, fill: int = 255) -> np.ndarray:
    """[N, H, W, 3] uint8 -> one [rows*(H+b)+b, ncols*(W+b)+b, 3] uint8 image, b px borders.

    Images fill rows left to right; empty cells of the last row stay `fill`.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images: expected uint8 [N, H, W, C], got {images.dtype} "
                         f"shape {list(images.shape)}")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    n, h, w, c = images.shape
    rows = max(1, -(-n // ncols))
    grid = np.full((rows * (h + border) + border, ncols * (w + border) + border, c), fill,
                   dtype=np.uint8)
    for i in range(n):
        y = border + (i // ncols) * (h + border)
        x = border + (i % ncols) * (w + border)
        grid[y:y + h, x:x + w] = images[i]
    return grid


def upscale(arr: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of [H, W, C] (or [N, H, W, C]) by an integer factor."""
    arr = np.asarray(arr)
    return arr.repeat(factor, axis=-3).repeat(factor, axis=-2)


def save_png(path: str, arr: np.ndarray) -> None:
    """Write [H, W, 3] uint8 as PNG to a local path or any fsspec URL."""
    import fsspec
    data = encode_png(arr, compress_level=6)
    with fsspec.open(str(path), "wb") as f:
        f.write(data)


def fit_to_resolution(img: np.ndarray, resolution: int, max_aspect: float = 2.0) -> np.ndarray:
    """[H, W, 3] uint8 -> [R, R, 3] uint8. The rule: center-crop to a square of side
    min(H, W), then area-downsample (box filter) when larger than R or bicubic-upsample when
    smaller. Images more elongated than `max_aspect` raise ValueError: the crop would keep
    too little of them."""
    h, w = img.shape[:2]
    if max(h, w) > max_aspect * min(h, w):
        raise ValueError(f"image is {h}x{w}: aspect ratio above {max_aspect}, a center crop "
                         f"would keep too little of it")
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = np.ascontiguousarray(img[top:top + s, left:left + s])
    if s == resolution:
        return img
    resample = Image.BOX if s > resolution else Image.BICUBIC
    return np.asarray(Image.fromarray(img).resize((resolution, resolution), resample=resample))
