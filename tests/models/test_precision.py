"""Precision modes: gankit.precision and the generator's fp16/bf16 blocks, on tiny random
generators and on CPU (the reduced-precision math is the same as on a GPU, only slower)."""
import pytest
import torch

from gankit import precision
from gankit.models.stylegan2 import (Generator, GeneratorConfig, MappingConfig, SynthesisConfig,
                                     modulated_conv2d)


def tiny_generator(seed=0, architecture="skip", resolution=32, num_fp16_res=0, conv_clamp=None):
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig(
        z_dim=16, w_dim=16, img_resolution=resolution, mapping=MappingConfig(num_layers=2),
        synthesis=SynthesisConfig(channel_base=256, channel_max=16, architecture=architecture,
                                  num_fp16_res=num_fp16_res, conv_clamp=conv_clamp))).eval()
    with torch.no_grad():  # non-zero noise strengths so the noise path is exercised
        for layer in G.synthesis.noise_layers():
            layer.noise_strength.fill_(0.5)
    return G


def cpu_runs(dtype) -> bool:
    try:
        x = torch.ones([1, 1, 3, 3], dtype=dtype)
        torch.nn.functional.conv2d(x, x)
        torch.nn.functional.conv_transpose2d(x, x, stride=2)
        return True
    except (RuntimeError, NotImplementedError):
        return False


def bf16_runs_on_cpu() -> bool:
    try:
        precision.check("bf16", "cpu")
        return True
    except ValueError:
        return False


needs_bf16 = pytest.mark.skipif(not bf16_runs_on_cpu(), reason="this CPU build refuses bf16")
needs_fp16 = pytest.mark.skipif(not cpu_runs(torch.float16), reason="no fp16 conv2d on this CPU")

# Largest |img - img_fp32| / max|img_fp32| measured over 10 seeds x 3 architectures x 8 samples
# (32 px, 3 reduced blocks) on torch 2.13 CPU: bf16 0.019, fp16 0.0025 (bf16 has 3 mantissa bits
# fewer: ~8x). The bounds are ~3x that.
REL_TOL = {"bf16": 0.06, "fp16": 0.01}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread runs them in milliseconds, while thread hand-offs on a busy
    2-core machine cost up to a second per forward."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------
# gankit.precision


def test_resolve():
    assert precision.resolve("auto", "cpu") == "fp32"
    assert precision.resolve("auto", "cuda:0") == precision.GPU_DEFAULT == "fp16"
    assert precision.resolve("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="fp32"):  # the message lists the choices
        precision.resolve("fp64", "cpu")
    assert precision.reduced_dtype("fp16") == torch.float16
    assert precision.reduced_dtype("bf16") == torch.bfloat16
    assert precision.reduced_dtype("tf32") is None


def test_check_refuses_gpu_modes_on_cpu():
    precision.check("fp32", "cpu")
    precision.check("auto", "cpu")
    with pytest.raises(ValueError, match="'fp16' needs a CUDA GPU"):
        precision.check("fp16", "cpu")
    with pytest.raises(ValueError, match="tf32"):
        precision.check("tf32", "cpu")
    with pytest.raises(ValueError, match="unknown precision"):
        precision.check("half", "cpu")


def test_configure_backends_and_autocast_on_cpu():
    for p in precision.PRECISIONS:
        precision.configure_backends("cpu", p)
    precision.configure_backends("cpu", "fp32", threads=torch.get_num_threads())
    linear = torch.nn.Linear(4, 4)
    with precision.autocast("cpu", "fp32"):
        assert linear(torch.ones(1, 4)).dtype == torch.float32
    if bf16_runs_on_cpu():
        with precision.autocast("cpu", "bf16"):
            assert linear(torch.ones(1, 4)).dtype == torch.bfloat16


# ----------------------------------------------------------------------------------------
# Generator.set_precision


@pytest.mark.parametrize("num_fp16_res, reduced", [
    (2, [32, 64]),
    (0, [8, 16, 32, 64]),   # checkpoint says 0: NVIDIA's default 4
    (6, [8, 16, 32, 64]),   # b4 never: the formula's floor is 8
])
def test_reduced_blocks_and_clamps(num_fp16_res, reduced):
    G = tiny_generator(resolution=64, num_fp16_res=num_fp16_res).set_precision("bf16")
    for block in G.synthesis.blocks():
        is_reduced = block.resolution in reduced
        assert block.dtype == (torch.bfloat16 if is_reduced else torch.float32)
        # no clamp in the checkpoint: NVIDIA's 256 in reduced blocks, none in fp32 blocks
        assert block.conv1.conv_clamp == (256 if is_reduced else None)
        assert block.torgb.conv_clamp == (256 if is_reduced else None)
    G.set_precision("tf32")  # fp32 tensors: every block back to fp32, clamp None
    for block in G.synthesis.blocks():
        assert block.dtype == torch.float32 and block.conv1.conv_clamp is None


def test_checkpoint_clamp_kept():
    G = tiny_generator(resolution=64, num_fp16_res=2, conv_clamp=4.0).set_precision("fp16")
    assert all(b.conv1.conv_clamp == 4.0 for b in G.synthesis.blocks())


def test_auto_on_cpu_is_fp32():
    G = tiny_generator().set_precision("auto")
    assert G.synthesis.precision == "fp32"
    assert all(b.dtype == torch.float32 for b in G.synthesis.blocks())


@pytest.mark.parametrize("architecture", ["skip", "resnet"])
def test_back_to_fp32_is_bit_identical(architecture):
    z = torch.randn(4, 16)
    with torch.no_grad():
        ref = tiny_generator(architecture=architecture)(z, noise_mode="const")
        G = tiny_generator(architecture=architecture)
        for p in ("bf16", "fp16"):
            if cpu_runs(precision.reduced_dtype(p)):
                G.set_precision(p)(z, noise_mode="const")
        img = G.set_precision("fp32")(z, noise_mode="const")
    assert torch.equal(img, ref)


def assert_close_to_fp32(p: str, architecture: str, fused_modconv: bool = False):
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    G = tiny_generator(architecture=architecture)
    with torch.no_grad():
        ref = G(z, noise_mode="const")
        img = G.set_precision(p)(z, noise_mode="const", fused_modconv=fused_modconv)
    assert img.dtype == torch.float32
    assert torch.isfinite(img).all()
    err = (img - ref).abs().max() / ref.abs().max()
    assert 0 < err < REL_TOL[p], f"{p} {architecture}: relative max error {err:.4f}"


@needs_bf16
@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
def test_bf16_close_to_fp32(architecture):
    assert_close_to_fp32("bf16", architecture, fused_modconv=(architecture == "orig"))


@needs_fp16
@pytest.mark.parametrize("architecture", ["skip", "resnet"])
def test_fp16_close_to_fp32(architecture):
    assert_close_to_fp32("fp16", architecture)


@needs_bf16
@pytest.mark.parametrize("fused", [False, True])
def test_modulated_conv2d_keeps_reduced_dtype(fused):
    """fp32 styles, weight and noise must not promote a bf16 x back to fp32 (fused or not)."""
    x = torch.randn(2, 4, 8, 8).to(torch.bfloat16)
    y = modulated_conv2d(x, torch.randn(3, 4, 3, 3), torch.randn(2, 4), noise=torch.randn(8, 8),
                         padding=1, fused=fused)
    assert y.dtype == torch.bfloat16 and y.shape == (2, 3, 8, 8)


@needs_bf16
def test_random_noise_in_reduced_blocks():
    G = tiny_generator().set_precision("bf16")
    with torch.no_grad():
        img = G(torch.randn(2, 16), noise_mode="random")
    assert img.dtype == torch.float32 and torch.isfinite(img).all()


@needs_fp16
def test_fp16_huge_activations_stay_finite():
    """Styles and weights x1e3 in the top block: fp32 images exceed fp16's range (65504);
    in fp16 the pre-normalisation keeps the demodulated convs finite and the clamp bounds
    ToRGB (no demodulation) at 256."""
    G = tiny_generator(num_fp16_res=1)
    top = G.synthesis.b32
    with torch.no_grad():
        for layer in (top.conv0, top.conv1, top.torgb):
            layer.weight.mul_(1e3)
            layer.affine.bias.add_(1e3)        # styles ~1e3
        z = torch.randn(2, 16)
        ref = G(z, noise_mode="const")
        img = G.set_precision("fp16")(z, noise_mode="const")
    assert ref.abs().max() > 65504
    assert torch.isfinite(img).all()
    assert img.abs().max() < 256 + 100  # ToRGB clamped; the image from below is small (~10)
