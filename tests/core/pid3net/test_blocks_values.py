"""PID3Net building blocks against the documented architecture, layer by layer (issue 20).

The forward passes are recomputed with torch.nn.functional from the blocks' own weights, following the
module docstring (thesis Fig. 3.4a), so a changed kernel, padding, channel count, order or activation fails.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_cxdi.errors import ConfigError
from napari_cxdi.pid3net.blocks import TEMPORAL_PADDINGS, Decoder, Encoder, TemporalBlock, UpdateNet

torch.set_num_threads(1)


def _conv(layer, x):
    return F.conv3d(x, layer.weight, layer.bias, stride=1, padding=layer.padding)


def _tb_reference(tb: TemporalBlock, x: torch.Tensor, mode: str) -> torch.Tensor:
    s = F.conv3d(x, tb.squeeze.weight, tb.squeeze.bias)
    if mode == "zeros":
        a = F.conv3d(s, tb.t1.weight, tb.t1.bias, padding=(0, 1, 1))
        b = F.conv3d(s, tb.t3.weight, tb.t3.bias, padding=(1, 1, 1))
        c = F.conv3d(s, tb.t5.weight, tb.t5.bias, padding=(2, 1, 1))
    else:
        a = F.conv3d(s, tb.t1.weight, tb.t1.bias, padding=(0, 1, 1))
        b = F.conv3d(F.pad(s, (0, 0, 0, 0, 1, 1), mode="replicate"), tb.t3.weight, tb.t3.bias, padding=(0, 1, 1))
        c = F.conv3d(F.pad(s, (0, 0, 0, 0, 2, 2), mode="replicate"), tb.t5.weight, tb.t5.bias, padding=(0, 1, 1))
    m = F.conv3d(torch.cat([a, b, c], dim=1), tb.merge.weight, tb.merge.bias)
    n = tb.norm
    m = F.batch_norm(m, n.running_mean, n.running_var, n.weight, n.bias, training=False, eps=n.eps)
    return m * torch.sigmoid(m)


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    return module.eval()


@pytest.mark.parametrize("mode", ["zeros", "replicate"])
@pytest.mark.parametrize("cin, c", [(1, 4), (3, 2), (2, 1)])
def test_temporal_block_layers(mode, cin, c):
    tb = TemporalBlock(cin, c, mode)
    half = max(c // 2, 1)
    assert tb.temporal_padding == mode
    assert tuple(tb.squeeze.weight.shape) == (c, cin, 1, 1, 1)
    assert tuple(tb.t1.weight.shape) == (c, c, 1, 3, 3)
    assert tuple(tb.t3.weight.shape) == (half, c, 3, 3, 3)
    assert tuple(tb.t5.weight.shape) == (half, c, 5, 3, 3)
    assert tuple(tb.merge.weight.shape) == (c, c + 2 * half, 1, 1, 1)
    assert tb.norm.num_features == c
    t_pad = (1, 2) if mode == "zeros" else (0, 0)
    assert tb.t1.padding == (0, 1, 1) and tb.t3.padding == (t_pad[0], 1, 1) and tb.t5.padding == (t_pad[1], 1, 1)
    _randomise(tb)
    x = torch.randn(2, cin, 5, 6, 7, generator=torch.Generator().manual_seed(1))
    out = tb(x)
    assert out.shape == (2, c, 5, 6, 7)
    torch.testing.assert_close(out, _tb_reference(tb, x, mode), rtol=1e-5, atol=1e-5)
    assert torch.equal(tb._time_padded(x, 2), x) if mode == "zeros" else tb._time_padded(x, 2).shape[2] == 9


def test_replicate_padding_repeats_the_edge_frames():
    tb = TemporalBlock(1, 2, "replicate")
    x = torch.arange(3.0).view(1, 1, 3, 1, 1)
    assert tb._time_padded(x, 2).flatten().tolist() == [0, 0, 0, 1, 2, 2, 2]
    assert tb._time_padded(x, 1).flatten().tolist() == [0, 0, 1, 2, 2]


def test_bad_padding_is_a_config_error():
    assert TEMPORAL_PADDINGS == ("zeros", "replicate")
    with pytest.raises(ConfigError, match=r"^temporal_padding must be one of \('zeros', 'replicate'\), got 'reflect'$"):
        TemporalBlock(1, 2, "reflect")
    with pytest.raises(ConfigError):
        Encoder(2, "circular")
    assert TemporalBlock(1, 2).temporal_padding == "zeros"  # the thesis' default at block level
    assert Encoder(2).latent.temporal_padding == "zeros" and Decoder(2).body[0].temporal_padding == "zeros"
    assert UpdateNet(2).tb.temporal_padding == "zeros"


@pytest.mark.parametrize("mode", ["zeros", "replicate"])
def test_encoder_stages_and_pooling(mode):
    enc = _randomise(Encoder(2, mode), seed=2)
    chans = [1, 2, 4, 8, 16]
    assert len(enc.stages) == 4
    for stage, a, b in zip(enc.stages, chans[:-1], chans[1:]):
        assert (stage.squeeze.in_channels, stage.squeeze.out_channels, stage.temporal_padding) == (a, b, mode)
    assert (enc.latent.squeeze.in_channels, enc.latent.squeeze.out_channels, enc.latent.temporal_padding) == (16, 16, mode)
    assert enc.pool.kernel_size == (1, 2, 2)
    x = torch.randn(1, 1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ref = x
    for stage in enc.stages:
        ref = F.max_pool3d(_tb_reference(stage, ref, mode), (1, 2, 2))
    ref = _tb_reference(enc.latent, ref, mode)
    out = enc(x)
    assert out.shape == (1, 16, 3, 2, 2)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["zeros", "replicate"])
def test_decoder_upsampling_and_head(mode):
    dec = _randomise(Decoder(2, mode), seed=4)
    chans = [16, 16, 8, 4, 2]
    blocks = list(dec.body)
    assert len(blocks) == 8
    z = torch.randn(1, 16, 3, 2, 2, generator=torch.Generator().manual_seed(5))
    ref = z
    for k, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
        tb, up = blocks[2 * k], blocks[2 * k + 1]
        assert (tb.squeeze.in_channels, tb.squeeze.out_channels, tb.temporal_padding) == (a, b, mode)
        assert (up.in_channels, up.out_channels, up.kernel_size, up.stride, up.padding, up.output_padding) == (
            b, b, (1, 3, 3), (1, 2, 2), (0, 1, 1), (0, 1, 1))
        ref = F.conv_transpose3d(_tb_reference(tb, ref, mode), up.weight, up.bias, stride=(1, 2, 2), padding=(0, 1, 1),
                                 output_padding=(0, 1, 1))
    assert (dec.head.in_channels, dec.head.out_channels, dec.head.kernel_size, dec.head.padding) == (2, 1, (1, 3, 3), (0, 1, 1))
    ref = F.conv3d(ref, dec.head.weight, dec.head.bias, padding=(0, 1, 1))
    out = dec(z)
    assert out.shape == (1, 1, 3, 32, 32)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["zeros", "replicate"])
def test_update_net(mode):
    net = _randomise(UpdateNet(3, mode), seed=6)
    assert (net.tb.squeeze.in_channels, net.tb.squeeze.out_channels, net.tb.temporal_padding) == (1, 3, mode)
    assert (net.head.in_channels, net.head.out_channels, net.head.kernel_size, net.head.padding) == (3, 1, (1, 3, 3), (0, 1, 1))
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    ref = F.conv3d(_tb_reference(net.tb, x.unsqueeze(1), mode), net.head.weight, net.head.bias, padding=(0, 1, 1))[:, 0]
    out = net(x)
    assert out.shape == (2, 4, 8, 8)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
