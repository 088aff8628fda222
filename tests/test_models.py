"""Tests of sarcrop.models: the input/output contract, causality, Eq. 3, registry, cost."""

from __future__ import annotations

import json

import pytest
import torch

from sarcrop.errors import ConfigError, InputDataError
from sarcrop.models import (
    MODELS,
    UTAE,
    RecurrentUNet,
    UNetDecoder,
    adapt_input_bands,
    build_model,
    count_flops,
    count_parameters,
    model_config,
    model_options,
    time_forward,
)
from sarcrop.models.utae import collapse_time

NAMES = tuple(MODELS)
SMALL = dict(widths=(8, 16, 24), dropout=0.0)


def small(name: str, in_bands: int = 2, time_steps: int = 5, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, in_bands, time_steps, **{**SMALL, **options})


def series(batch: int = 2, steps: int = 5, bands: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(batch, steps, bands, size, size, generator=torch.Generator().manual_seed(1))


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Run a few batches in train mode so batch-norm statistics are not the identity."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(series(bands=model.in_bands, steps=model.time_steps) * 2)
    return model.eval()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bands", [1, 2, 3])
def test_output_shape_for_every_season_length(name: str, bands: int) -> None:
    model = small(name, in_bands=bands).eval()
    with torch.inference_mode():
        for steps in range(1, model.time_steps + 1):
            out = model(series(steps=steps, bands=bands))
            assert out.shape == (2, 1, 32, 32)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_sides_not_multiple_of_pooling_are_padded_and_cropped(name: str) -> None:
    model = small(name).eval()
    x = torch.rand(1, 5, 2, 30, 27)
    with torch.inference_mode():
        out = model(x)
        padded = model(torch.nn.functional.pad(x, (0, 1, 0, 2)))  # to 32 x 28
    assert out.shape == (1, 1, 30, 27)
    torch.testing.assert_close(out, padded[..., :30, :27])


@pytest.mark.parametrize("name", NAMES)
def test_short_series_equals_zero_padded_series(name: str) -> None:
    model = trained_like(small(name))
    x = series()
    with torch.inference_mode():
        for steps in (1, 3):
            zeroed = x.clone()
            zeroed[:, steps:] = 0
            torch.testing.assert_close(model(x[:, :steps]), model(zeroed), atol=1e-6, rtol=0)
            assert not torch.allclose(model(x[:, :steps]), model(x), atol=1e-4)


@pytest.mark.parametrize("norm", ["batch", "group", "instance"])
def test_recurrent_states_are_causal(norm: str) -> None:
    model = small("recurrent_unet", norm=norm)
    # Batch norm mixes dates in training mode, so causality is checked in eval mode for it.
    model.train(norm != "batch")
    x = series()
    changed = x.clone()
    changed[:, 3:] = torch.rand_like(changed[:, 3:])
    with torch.no_grad():
        for before, after in zip(model.encoder.states(x), model.encoder.states(changed)):
            torch.testing.assert_close(before[:, :3], after[:, :3])
            assert not torch.allclose(before[:, 3:], after[:, 3:])


def test_recurrence_adds_weighted_previous_state() -> None:
    level = small("recurrent_unet").eval().encoder.levels[0]
    x = series()
    with torch.no_grad():
        level.carry.fill_(0.25)
        states = level(x)
        features = level.block(x[:, 2])
    torch.testing.assert_close(states[:, 2], features + 0.25 * states[:, 1])


@pytest.mark.parametrize("name", NAMES)
def test_eq3_repeated_band_reproduces_pretrained_output(name: str) -> None:
    model = trained_like(small(name, in_bands=1))
    x = series(bands=1)
    with torch.inference_mode():
        expected = model(x)
        adapted = adapt_input_bands(model, ["VH", "VV"], ["VH"])
        assert adapted.first_conv.in_channels == 2 * (5 if name == "unet2d" else 1)
        got = adapted(x.repeat(1, 1, 2, 1, 1))
    assert (got - expected).abs().max() < 1e-5


def test_eq3_halves_the_pretrained_weights() -> None:
    model = small("recurrent_unet", in_bands=1)
    weight = model.first_conv.weight.detach().clone()
    adapt_input_bands(model, ["VH", "VV"], ["VH"])
    torch.testing.assert_close(model.first_conv.weight[:, :1], weight / 2)
    torch.testing.assert_close(model.first_conv.weight[:, 1:], weight / 2)
    assert model_config(model)["in_bands"] == 2


def test_adapt_n_to_m_keeps_known_bands_and_output_scale() -> None:
    model = trained_like(small("recurrent_unet", in_bands=2))
    weight = model.first_conv.weight.detach().clone()
    x = series(bands=1)
    with torch.inference_mode():
        expected = model(x.repeat(1, 1, 2, 1, 1))
        adapt_input_bands(model, ["vv", "HH", "VH"], ["VH", "VV"])
        got = model(x.repeat(1, 1, 3, 1, 1))
    new = model.first_conv.weight.detach()
    torch.testing.assert_close(new[:, 0], weight[:, 1] * 2 / 3)
    torch.testing.assert_close(new[:, 1], weight.mean(dim=1) * 2 / 3)
    torch.testing.assert_close(new[:, 2], weight[:, 0] * 2 / 3)
    assert (got - expected).abs().max() < 1e-5


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("old", "new"),
    [(["VH", "VV"], ["VH"]), (["VH", "VV", "HH"], ["VV", "XX"]), (["VH", "VV"], ["HH"])],
    ids=["drop", "drop-and-add", "none-kept"],
)
def test_eq3_keeps_the_pretrained_output_when_bands_are_dropped(name, old, new) -> None:
    """An image repeated in every band gives the pre-trained output also where bands are left
    out (the dropped bands' weights go to the kept ones; 2·W_VH for VH|VV → VH did not)."""
    model = trained_like(small(name, in_bands=len(old)))
    x = series(bands=1)
    with torch.inference_mode():
        expected = model(x.repeat(1, 1, len(old), 1, 1))
        adapt_input_bands(model, new, old)
        got = model(x.repeat(1, 1, len(new), 1, 1))
    assert (got - expected).abs().max() < 1e-5


def test_adapt_rejects_bands_that_do_not_fit() -> None:
    model = small("recurrent_unet", in_bands=1)
    with pytest.raises(ConfigError, match="takes 1 bands"):
        adapt_input_bands(model, ["VH", "VV"], ["VH", "VV"])
    with pytest.raises(ConfigError, match="without repeats"):
        adapt_input_bands(model, ["VH", "VH"], ["VH"])


@pytest.mark.parametrize("name", NAMES)
def test_encoder_and_decoder_partition_the_parameters(name: str) -> None:
    model = small(name)
    encoder = {id(p) for p in model.encoder.parameters()}
    decoder = {id(p) for p in model.decoder.parameters()}
    assert encoder and decoder and not encoder & decoder
    assert encoder | decoder == {id(p) for p in model.parameters()}
    assert any(p is model.first_conv.weight for p in model.encoder.parameters())


def test_decoder_blocks_run_from_bottleneck_to_output() -> None:
    model = small("recurrent_unet", widths=(8, 16, 24, 32)).eval()
    order: list[int] = []
    for index, block in enumerate(model.decoder.blocks):
        block.register_forward_hook(lambda *_, i=index: order.append(i))
    with torch.no_grad():
        model(series())
    assert order == [0, 1, 2]
    assert model.decoder.blocks[0].up.in_channels == 32
    assert model.decoder.blocks[-1].conv[0].out_channels == 8
    assert model.decoder.head.in_channels == 8


@pytest.mark.parametrize("name", NAMES)
def test_registry_round_trip(name: str) -> None:
    norm = "group" if MODELS[name].reads_neighbours else "batch"  # group norm mixes pixels
    model = small(name, in_bands=3, norm=norm, dropout=0.25)
    config = json.loads(json.dumps(model_config(model)))
    assert config["name"] == name and config["norm"] == norm and config["dropout"] == 0.25
    rebuilt = build_model(**config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }
    rebuilt.load_state_dict(model.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_a_merged_head_answers_for_its_classes_and_rebuilds(name: str) -> None:
    """One output per class, read as the flagged classes against the rest: the sigmoid of the
    merged output is their summed softmax probability; the options rebuild it, ONNX exports it."""
    import onnxruntime

    from sarcrop.prediction.onnx_export import export_onnx
    from sarcrop.training.strategies import merge_head

    model = trained_like(small(name, out_channels=4))
    x = series()
    with torch.no_grad():
        summed = model(x).softmax(dim=1)[:, [0, 2]].sum(dim=1)
        merge_head(model, [True, False, True, False])
        merged = model(x)
    assert merged.shape == (2, 1, 32, 32)
    assert torch.allclose(torch.sigmoid(merged[:, 0]), summed, atol=1e-6)
    config = json.loads(json.dumps(model_config(model)))
    assert config["out_channels"] == 1 and config["merged_head"] == [True, False, True, False]
    rebuilt = build_model(**config).eval()
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), merged)
    session = onnxruntime.InferenceSession(export_onnx(model, tuple(x.shape)))
    exported = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert abs(exported - merged.numpy()).max() < 1e-4
    for flags, out_channels in [([True, True], 1), ([True], 1), ([True, False], 2)]:
        with pytest.raises(ConfigError, match="merged"):
            build_model(name, 2, 5, out_channels=out_channels, merged_head=flags)


def test_registry_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ConfigError, match="recurrent_unet, utae, convlstm_unet, unet2d"):
        build_model("transformer", 1, 8)
    with pytest.raises(ConfigError, match="valid: widths, dropout, norm"):
        build_model("recurrent_unet", 1, 8, depth=4)
    with pytest.raises(ConfigError, match="norm must be one of"):
        build_model("unet2d", 1, 8, norm="layer")
    with pytest.raises(ConfigError, match="divisible by heads"):
        build_model("utae", 1, 8, widths=(6, 12), heads=4)
    with pytest.raises(ConfigError, match="at least 2 channels per head"):
        build_model("utae", 1, 8, widths=(4, 4), heads=4)  # a constant per-pixel norm


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("heads", 0, "heads must be a whole number of 1 or more, got 0"),
        ("heads", -1, "heads must be a whole number"),
        ("heads", 2.0, "heads must be a whole number"),
        ("key_dim", 0, "key_dim must be a whole number of 1 or more, got 0"),
        ("key_dim", True, "key_dim must be a whole number"),
        ("step_days", "x", "step_days must be a number of days above 0, got 'x'"),
        ("step_days", float("nan"), "step_days must be a number of days above 0, got nan"),
        ("step_days", float("inf"), "step_days must be"),
        ("step_days", 0, "step_days must be"),
    ],
)
def test_utae_options_are_checked_when_built(option: str, value: object, message: str) -> None:
    """heads or key_dim 0 divided by zero, negative ones failed in PyTorch, and a step_days
    of text built and failed in the first forward pass (NaN built and ran)."""
    with pytest.raises(ConfigError, match=message):
        build_model("utae", 2, 8, widths=(8, 16), **{option: value})


@pytest.mark.parametrize("name", ["recurrent_unet", "utae", "convlstm_unet", "unet2d"])
def test_a_one_pixel_bottleneck_that_norm_makes_constant_is_refused(name: str) -> None:
    """Inputs that reach the bottleneck as one pixel: instance norm failed in PyTorch
    ("Expected more than 1 spatial element"), group norm of one channel per group made the
    bottleneck the same for every input. Wider groups, batch norm and larger inputs run."""
    x = torch.rand(1, 3, 2, 4, 4)
    for norm, widths in (("instance", (8, 8, 16)), ("group", (8, 8, 8))):
        model = build_model(name, 2, 3, widths=widths, norm=norm).eval()
        with pytest.raises(InputDataError, match="a 4×4 input reaches the bottleneck of 3 "):
            model(x)
        assert model(torch.rand(1, 3, 2, 4, 5)).shape == (1, 1, 4, 5)
    for norm, widths in (("group", (8, 8, 16)), ("batch", (8, 8, 8))):
        assert build_model(name, 2, 3, widths=widths, norm=norm).eval()(x).shape == (1, 1, 4, 4)


def test_wrong_input_raises_input_data_error() -> None:
    model = small("recurrent_unet")
    with pytest.raises(InputDataError, match="expects 2 bands"):
        model(series(bands=3))
    with pytest.raises(InputDataError, match="1 to 5 time steps"):
        model(series(steps=6))
    with pytest.raises(InputDataError, match=r"\(batch, time, bands, H, W\)"):
        model(torch.rand(2, 2, 32, 32))


@pytest.mark.parametrize("name", NAMES)
def test_flops_scale_with_area(name: str) -> None:
    model = small(name)
    flops_32 = count_flops(model, (1, 5, 2, 32, 32))
    flops_64 = count_flops(model, (1, 5, 2, 64, 64))
    assert flops_32 > 0
    assert 3.8 < flops_64 / flops_32 < 4.2


def test_default_recurrent_unet_cost() -> None:
    model = RecurrentUNet(in_bands=1)
    assert 400_000 < count_parameters(model) < 800_000
    frozen = sum(p.numel() for p in model.decoder.parameters())
    model.decoder.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == count_parameters(model) - frozen


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = small(name).train()
    model(series()).square().mean().backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None, key
        assert parameter.grad.abs().sum() > 0, key


def test_utae_positions_and_attention() -> None:
    model = trained_like(small("utae", step_days=10.0))
    x = series(steps=3)
    with torch.inference_mode():
        default = model(x)
        given = model(x, positions=torch.tensor([[0, 10, 20]] * 2))
        shifted = model(x, positions=torch.tensor([[100, 130, 160]] * 2))
        _, attention = model.encoder.ltae(
            torch.rand(2, 5, 24, 4, 4), torch.arange(5.0).expand(2, 5)
        )
    torch.testing.assert_close(default, given)
    assert not torch.allclose(default, shifted, atol=1e-4)
    torch.testing.assert_close(attention.sum(dim=2), torch.ones(2, 4, 4, 4))


@pytest.mark.parametrize("name", NAMES)
def test_a_pixel_does_not_read_far_pixels(name: str) -> None:
    """In eval mode a pixel's output depends on its neighbourhood alone, not on pixels beyond
    the receptive field: not on the window's size, nor on no-data at its far edge. U-TAE's
    L-TAE normalised over every pixel of the window, and 7 of 256 pixels changed class when
    the window halved."""
    model = small(name).eval()
    x = torch.rand(1, 5, 2, 96, 96, generator=torch.Generator().manual_seed(2))
    far = x.clone()
    far[..., 64:, 64:] = 5 * torch.rand(1, 5, 2, 32, 32, generator=torch.Generator().manual_seed(3))
    same = {"rtol": 0.0, "atol": 1e-6}  # U-TAE's changed by 1e-4 to 1e-3
    with torch.inference_mode():
        near = model(x)[..., :16, :16]
        torch.testing.assert_close(model(far)[..., :16, :16], near, **same)
        torch.testing.assert_close(model(x[..., :64, :64])[..., :16, :16], near, **same)
        far[..., 64:, :] = 0  # no data along the far side
        torch.testing.assert_close(model(far)[..., :16, :16], near, **same)


def test_collapse_time_with_uniform_attention_is_the_mean() -> None:
    features = torch.rand(2, 5, 8, 6, 6)
    attention = torch.full((2, 4, 5, 3, 3), 0.2)
    torch.testing.assert_close(collapse_time(features, attention), features.mean(dim=1))


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_gives_the_same_logits(name: str) -> None:
    model = trained_like(small(name))
    x = series()
    with torch.inference_mode():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-4)


def test_utae_is_registered_class() -> None:
    assert isinstance(small("utae"), UTAE)


def test_recurrence_in_place_inference_matches_autograd_path() -> None:
    model = trained_like(small("recurrent_unet"))
    x = series()
    with torch.inference_mode():
        fast = model(x)
    slow = model(x)  # parameters require grad: the autograd-safe path
    assert slow.requires_grad
    torch.testing.assert_close(fast, slow.detach())


def test_time_forward_restores_training_mode() -> None:
    model = small("unet2d").train()
    seconds = time_forward(model, (1, 5, 2, 32, 32), repeats=1)
    assert 0 < seconds < 60
    assert model.training


@pytest.mark.parametrize("name", NAMES)
def test_each_model_only_supplies_its_encoder(name: str) -> None:
    cls = MODELS[name]
    assert "__init__" not in vars(cls) and "build_encoder" in vars(cls)
    model = small(name)
    assert "build_decoder" in vars(cls) or type(model.decoder) is UNetDecoder
    assert model_options(name) == cls.option_defaults()
    assert tuple(model_options(name))[:4] == ("widths", "dropout", "norm", "out_channels")
    default = build_model(name, 2, 5)
    assert default.widths == cls.default_widths == model_options(name)["widths"]


def test_option_checks_are_shared_by_every_model() -> None:
    for name in NAMES:
        with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\)"):
            build_model(name, 1, 8, dropout=1.0)
        with pytest.raises(ConfigError, match="widths must list at least 2"):
            build_model(name, 1, 8, widths=(8,))
        with pytest.raises(ConfigError, match="must be positive"):
            build_model(name, 1, 8, out_channels=0)
    with pytest.raises(ConfigError, match=r"unknown option.* heads .*'recurrent_unet'"):
        build_model("recurrent_unet", 1, 8, heads=4)
    with pytest.raises(ConfigError, match=r"valid: .*out_channels, heads, key_dim, step_days"):
        build_model("utae", 1, 8, depth=2)
    assert build_model("utae", 1, 8, widths=(8, 16), heads=2).encoder.ltae.heads == 2


def test_tempcnn_reads_each_pixel_alone() -> None:
    """Changing one pixel's series changes that pixel's output only, and a window's outputs
    are the larger image's there: maps do not depend on the window."""
    model = trained_like(small("tempcnn"))
    x = series(batch=1, size=12)
    changed = x.clone()
    changed[..., 5, 7] = torch.rand(5, 2)
    with torch.inference_mode():
        before, after = model(x), model(changed)
        window = model(x[..., 2:9, 3:11])
    moved = (before - after).abs()[0, 0] > 0
    assert moved[5, 7] and moved.sum() == 1
    torch.testing.assert_close(window, before[..., 2:9, 3:11], atol=1e-6, rtol=0)
    assert model.spatial_multiple() == 1


def test_tempcnn_refuses_norms_that_mix_pixels() -> None:
    for norm in ("group", "instance"):
        with pytest.raises(ConfigError, match="reads each pixel alone"):
            build_model("tempcnn", 2, 8, norm=norm)
    with pytest.raises(ConfigError, match="kernel_size must be a positive odd number"):
        build_model("tempcnn", 2, 8, kernel_size=2)
