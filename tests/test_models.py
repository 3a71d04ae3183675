"""syncssl.models: ResNet backbones, PairNet, PoseNet."""
import copy

import pytest
import torch
import torch.nn.functional as F

from syncssl.errors import CheckpointMismatch
from syncssl.models import (
    FUSIONS,
    PairNet,
    PairNetConfig,
    PoseNet,
    PoseNetConfig,
    backbone_state_dict,
    get_fusion,
    load_backbone,
    resnet,
)

CL = torch.channels_last


def images(n, size, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed)).contiguous(memory_format=CL)


@pytest.mark.parametrize("depth, expansion", [(18, 1), (34, 1), (50, 4)])
@pytest.mark.parametrize("width", [0.25, 1.0])
def test_backbone_shapes(depth, expansion, width):
    model = resnet(depth, width).to(memory_format=CL).eval()
    assert model.out_features == max(8, round(512 * width)) * expansion
    with torch.no_grad():
        for size in (64, 97, 128):
            feats = model.forward_features(images(1, size))
            assert feats.shape[:2] == (1, model.out_features)
            # stride 32 overall, each stride-2 layer rounding up
            expected = size
            for _ in range(5):
                expected = (expected + 1) // 2
            assert feats.shape[2:] == (expected, expected)
            assert model(images(1, size)).shape == (1, model.out_features)


def test_width_keeps_channels_integral_and_at_least_8():
    model = resnet(18, 0.1)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert min(c.out_channels for c in convs) == 8
    assert resnet(50, 0.125).out_features == 64 * 4


def test_activations_stay_channels_last():
    model = resnet(50, 0.25).to(memory_format=CL).eval()
    outputs = []
    for module in [model.stem, *model.stages, *model.blocks]:
        module.register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        model(images(2, 97))
    assert len(outputs) == 1 + 4 + 16
    for o in outputs:
        assert o.shape[2] > 1 and o.is_contiguous(memory_format=CL), o.stride()
    # a model left in NCHW does not silently switch (check the test above can fail)
    plain, outputs[:] = resnet(18, 0.25).eval(), []
    plain.stem.register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        plain(torch.randn(2, 3, 64, 64))
    assert not outputs[0].is_contiguous(memory_format=CL)


def test_zero_init_residual_starts_blocks_as_identity():
    model = resnet(18, 0.25, zero_init_residual=True)
    assert all(torch.all(b.last_bn.weight == 0) for b in model.blocks)
    assert all(torch.all(b.last_bn.weight == 1) for b in resnet(18, 0.25).blocks)


@pytest.mark.parametrize("name, factor", [("concat", 2), ("diff", 1), ("absdiff", 1), ("prod", 1), ("sum", 1),
                                          ("all", 5)])
def test_fusion_feature_sizes(name, factor):
    assert FUSIONS[name].factor == factor
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    assert get_fusion(name).fuse(a, b).shape == (3, 16 * factor)
    model = PairNet(PairNetConfig(depth=18, width=0.125, embed_dim=32, fusion=name, head_hidden=16))
    assert model.sync_head[0].in_features == 32 * factor
    out = model(images(4, 64))
    assert out["sync"].shape == out["flip"].shape == (2, 2) and out["embedding"].shape == (4, 32)


def test_fusion_values():
    a, b = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 5.0]])
    assert get_fusion("prod").fuse(a, b).tolist() == [[3.0, -10.0]]
    assert get_fusion("absdiff").fuse(a, b).tolist() == [[2.0, 7.0]]
    assert get_fusion("all").fuse(a, b).tolist() == [[1, -2, 3, 5, -2, -7, 2, 7, 3, -10]]


def test_centred_embeddings_are_standardised_before_fusion():
    torch.manual_seed(0)
    net = PairNet(PairNetConfig(depth=18, width=0.25, center=True)).train()
    x = images(32, 32)
    views, embedding = net.view_features(x), net.embed(x)
    assert (embedding >= 0).all()  # pooled ReLU features: all non-negative, their product only grows with magnitude
    centred = (embedding - embedding.mean(0)) / (embedding.var(0, unbiased=False) + 1e-5).sqrt()
    torch.testing.assert_close(views, centred, atol=1e-4, rtol=1e-4)
    fused = net.fusion.fuse(views[0::2], views[1::2])
    assert (fused < 0).any()
    torch.testing.assert_close(net(x)["sync"], net.sync_head(fused), atol=1e-5, rtol=1e-5)
    plain = PairNet(PairNetConfig(depth=18, width=0.25))
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.modules())  # the default: the paper's


def test_cross_pairs_are_scored_like_the_batch_pairs():
    """A grouped batch's extra pairs go through the same fusion and sync head: the cross pair (2n, 2n+1) scores
    exactly as pair n, and any other pair as its two views' fused features."""
    torch.manual_seed(0)
    net = PairNet(PairNetConfig(depth=18, width=0.25, center=True)).train()
    x = images(8, 32)
    cross = torch.tensor([[0, 1], [2, 3], [0, 5], [6, 3]])
    out = net(x, cross)
    assert out["cross_sync"].shape == (4, 2)
    torch.testing.assert_close(out["cross_sync"][:2], out["sync"][:2], atol=1e-5, rtol=1e-5)
    views = net.view_features(x)  # train mode: the same batch statistics
    torch.testing.assert_close(out["cross_sync"][2], net.sync_head(net.fusion.fuse(views[0:1], views[5:6]))[0],
                               atol=1e-5, rtol=1e-5)
    assert "cross_sync" not in net(x)


def test_unknown_fusion_lists_the_choices():
    with pytest.raises(ValueError, match="unknown fusion 'mul'.*concat, diff, absdiff, prod, sum, all"):
        PairNetConfig(fusion="mul")


def test_odd_batch_is_a_clear_error():
    model = PairNet(PairNetConfig(width=0.125))
    with pytest.raises(ValueError, match="even batch"):
        model(images(3, 64))


def _swap_views(x):
    return x.view(-1, 2, *x.shape[1:]).flip(1).reshape(x.shape).contiguous(memory_format=CL)


@pytest.mark.parametrize("fusion, symmetric", [("prod", True), ("sum", True), ("absdiff", True), ("concat", False),
                                               ("diff", False)])
def test_views_share_weights(fusion, symmetric):
    torch.manual_seed(0)
    model = PairNet(PairNetConfig(width=0.125, embed_dim=16, fusion=fusion, head_hidden=8)).to(memory_format=CL).eval()
    x = images(4, 64)
    with torch.no_grad():
        out, swapped = model(x), model(_swap_views(x))
    # each view's embedding depends only on its own image (same backbone for both)
    torch.testing.assert_close(swapped["embedding"], _swap_views(out["embedding"][..., None, None])[..., 0, 0])
    same = torch.allclose(out["sync"], swapped["sync"], atol=1e-6) and torch.allclose(out["flip"], swapped["flip"],
                                                                                    atol=1e-6)
    assert same == symmetric


def test_gradients_reach_the_backbone_from_both_heads():
    model = PairNet(PairNetConfig(width=0.125, embed_dim=16, head_hidden=8)).to(memory_format=CL)
    x = images(4, 64)
    for head in ("sync", "flip"):
        model.zero_grad(set_to_none=True)
        model(x)[head].sum().backward()
        assert model.backbone.stem[0].weight.grad is not None and model.backbone.stem[0].weight.grad.abs().sum() > 0
        other = model.flip_head if head == "sync" else model.sync_head
        assert all(p.grad is None for p in other.parameters())


@pytest.mark.parametrize("up_to, unit, frozen_prefixes", [
    (3, "stage", ("stem.", "stages.0.", "stages.1.", "stages.2.")),
    (0, "stage", ("stem.",)),
    (3, "block", ("stem.", "stages.0.0.", "stages.0.1.", "stages.1.0.")),
])
def test_freeze_exactly_the_intended_parameters(up_to, unit, frozen_prefixes):
    model = resnet(18, 0.125)
    model.freeze(up_to, unit)
    for name, p in model.named_parameters():
        assert p.requires_grad == (not name.startswith(frozen_prefixes)), name
    # frozen BN keeps its statistics while the model trains; the rest keeps updating
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("running_mean")}
    model(images(2, 64))
    after = model.state_dict()
    for key, value in before.items():
        assert torch.equal(value, after[key]) == key.startswith(frozen_prefixes), key
    model.unfreeze()
    assert all(p.requires_grad for p in model.parameters()) and model.stem.training


def test_frozen_posenet_keeps_frozen_bn_in_eval_mode():
    model = PoseNet.from_config(PoseNetConfig(width=0.125, hidden=8, frozen_stages=3))
    load_backbone(resnet(18, 0.125).state_dict(), model)  # loading weights keeps the freeze
    model.train()
    assert model.head.training and model.backbone.stages[3].training
    assert not model.backbone.stem.training and not model.backbone.stages[2][1].bn2.training
    assert any(p.requires_grad for p in model.backbone.stages[3].parameters())
    assert all(n.startswith(("backbone.stages.3.", "head.")) for n, p in model.named_parameters() if p.requires_grad)


def test_runs_under_autocast():
    model = PairNet(PairNetConfig(width=0.125, embed_dim=16)).to(memory_format=CL)
    pose = PoseNet.from_pairnet(model, hidden=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images(4, 64))
        joints = pose(images(2, 64))
    assert out["sync"].dtype == torch.bfloat16 and torch.isfinite(out["sync"]).all()
    assert joints.dtype == torch.float32 and torch.all(joints[:, 0] == 0)  # mm scaling happens in float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_channels_last_amp():
    model = PairNet(PairNetConfig(width=0.25, embed_dim=32)).cuda().to(memory_format=CL)
    x = images(8, 97).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        feats = model.backbone.forward_features(x)
        out = model(x)
    assert feats.is_contiguous(memory_format=CL) and feats.dtype == torch.float16
    (out["sync"].float().sum() + out["flip"].float().sum()).backward()
    assert torch.isfinite(model.backbone.stem[0].weight.grad).all()


def test_freeze_rejects_bad_counts():
    with pytest.raises(ValueError, match="has 4 stages"):
        resnet(18, 0.125).freeze(5)
    with pytest.raises(ValueError, match="unit"):
        resnet(18, 0.125).freeze(1, "layer")


def test_posenet_root_is_zero_and_outputs_are_sane():
    model = PoseNet(resnet(18, 0.125), hidden=32).to(memory_format=CL)
    pose = model(images(3, 64))
    assert pose.shape == (3, 17, 3)
    assert torch.all(pose[:, 0] == 0) and torch.all(pose[:, 1:] != 0)
    assert pose.abs().max() < 500  # millimetres: starts near the (zero) mean pose, not at metres of noise
    mean = torch.randn(17, 3) * 200
    with torch.no_grad():
        model.head[-1].weight.zero_()
        shifted = PoseNet(model.backbone, hidden=32, mean_mm=mean)
        shifted.head.load_state_dict(model.head.state_dict())
        expected = mean.clone()
        expected[0] = 0
        torch.testing.assert_close(shifted(images(1, 64))[0], expected)


def test_grid_pooled_posenet_reads_what_the_grid_pooled_pairnet_embeds():
    """pool="grid": the head reads the 2x2 cells of the last feature map, the features a grid-pooled PairNet was
    pre-trained on; a mirrored image gives other features (a global average cannot tell left from right)."""
    pairnet = PairNet(PairNetConfig(width=0.125, pool="grid")).eval()
    pose = PoseNet.from_pairnet(pairnet, hidden=32, pool="grid").eval()
    assert pose.head[0].in_features == 4 * pose.backbone.out_features == pairnet.embed_dim
    x = images(2, 64)
    with torch.no_grad():
        torch.testing.assert_close(pose.backbone.embed(x, "grid"), pairnet.embed(x))
        mirrored = x.flip(-1)
        avg, grid = pose.backbone.embed(x), pose.backbone.embed(x, "grid")
        assert not torch.allclose(pose.backbone.embed(mirrored, "grid"), grid)
        torch.testing.assert_close(grid.view(2, -1, 4).mean(-1), avg)  # the cells average to the global mean
    assert pose(x).shape == (2, 17, 3)
    with pytest.raises(ValueError, match="unknown pool 'max'"):
        PoseNet(resnet(18, 0.125), hidden=8, pool="max")


def test_posenet_from_pairnet_copies_the_backbone():
    pairnet = PairNet(PairNetConfig(width=0.125))
    pose = PoseNet.from_pairnet(pairnet, hidden=32)
    for (k, a), b in zip(pairnet.backbone.state_dict().items(), pose.backbone.state_dict().values()):
        assert torch.equal(a, b), k
    assert pose.backbone is not pairnet.backbone


def test_load_backbone_from_a_pairnet_checkpoint():
    pairnet = PairNet(PairNetConfig(width=0.125))
    with torch.no_grad():
        pairnet.backbone.stem[0].weight.add_(1.0)
    pose = PoseNet(resnet(18, 0.125).to(memory_format=CL), hidden=32)
    wrapped = {"module." + k: v for k, v in pairnet.state_dict().items()}  # as saved from DDP
    assert set(backbone_state_dict(wrapped)) == set(pose.backbone.state_dict())
    load_backbone({"model": wrapped}, pose)
    assert torch.equal(pose.backbone.stem[0].weight, pairnet.backbone.stem[0].weight)
    assert pose.backbone.stem[0].weight.is_contiguous(memory_format=CL)


def test_load_backbone_of_another_architecture_is_a_clear_error():
    checkpoint = PairNet(PairNetConfig(depth=18, width=0.125)).state_dict()
    with pytest.raises(CheckpointMismatch, match=r"pretrain\.pt: .*resnet18 \(width 0\.125\).*resnet34 \(width 0\.125\)"
                                                 r".*'stages\.0\.2\.conv1\.weight' is missing"):
        load_backbone(checkpoint, PoseNet(resnet(34, 0.125), hidden=8), source="pretrain.pt")
    with pytest.raises(CheckpointMismatch, match=r"resnet18 \(width 0\.125\).*resnet18 \(width 0\.25\).*"
                                                 r"'stem\.0\.weight' has shape \(8, 3, 7, 7\)"):
        load_backbone(checkpoint, resnet(18, 0.25))
    with pytest.raises(CheckpointMismatch, match="resnet50"):
        load_backbone(resnet(50, 0.125).state_dict(), resnet(18, 0.125))
    with pytest.raises(CheckpointMismatch, match="no backbone weights"):
        load_backbone({"head.weight": torch.zeros(1)}, resnet(18, 0.125))


def test_pairnet_overfits_a_few_pairs():
    torch.manual_seed(0)
    model = PairNet(PairNetConfig(width=0.125, embed_dim=32, head_hidden=32)).to(memory_format=CL)
    x = images(32, 48, seed=1)
    sync, flip = torch.randint(0, 2, (16,)), torch.randint(0, 2, (16,))
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        out = model(x)
        loss = F.cross_entropy(out["sync"], sync) + F.cross_entropy(out["flip"], flip)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = model(x)
    accuracy = ((out["sync"].argmax(1) == sync).float().mean() + (out["flip"].argmax(1) == flip).float().mean()) / 2
    assert accuracy > 0.9, accuracy
    assert not torch.equal(before["backbone.stem.0.weight"], model.state_dict()["backbone.stem.0.weight"])


def test_group_norm_backbone_is_independent_of_the_batch():
    """norm="group": a sample's output does not depend on the rest of the batch (what makes DDP exact)."""
    from syncssl.models.resnet import resnet
    torch.manual_seed(0)
    net = resnet(18, 0.25, norm="group").train()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    x = torch.randn(4, 3, 40, 40)
    assert torch.allclose(net(x)[:2], net(x[:2]), atol=1e-5)
    bn = resnet(18, 0.25).train()
    assert not torch.allclose(bn(x)[:2], bn(x[:2]), atol=1e-5)  # the control: BatchNorm mixes the batch
    with pytest.raises(ValueError, match="choose one of: batch, group"):
        resnet(18, 0.25, norm="layer")


def test_person_standardisation_stretches_each_view_over_its_person_pixels():
    """input_norm="person": a pale, low-contrast person and the same person in strong colours reach the stem as
    the same image; the background fill (0 after the op's normalisation) stays 0 and does not count."""
    from syncssl.models.resnet import PersonStandardise
    g = torch.Generator().manual_seed(0)
    person = torch.randn(2, 3, 24, 24, generator=g)
    background = torch.zeros(2, 3, 24, 24)
    inside = torch.zeros(1, 1, 24, 24, dtype=torch.bool)
    inside[..., 4:20, 6:18] = True
    strong = torch.where(inside, person, background)
    pale = torch.where(inside, 0.8 + 0.25 * person * torch.tensor([1.0, 0.6, 1.5]).view(1, 3, 1, 1), background)
    out_strong, out_pale = PersonStandardise()(strong), PersonStandardise()(pale)
    torch.testing.assert_close(out_pale, out_strong, atol=1e-4, rtol=1e-4)
    fg = out_strong[:, :, 4:20, 6:18]
    torch.testing.assert_close(fg.mean((2, 3)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(fg.std((2, 3), unbiased=False), torch.ones(2, 3), atol=1e-4, rtol=0)
    assert out_strong[~inside.expand(2, 3, 24, 24)].abs().max() == 0
    flat = PersonStandardise()(torch.where(inside, torch.full_like(person, 0.3), background))
    assert flat.abs().max() < 1e-5  # a flat crop is not blown up into noise (the std floor)


def test_input_norm_is_part_of_the_model_config_and_has_no_weights():
    plain = PairNet(PairNetConfig(depth=18, width=0.25))
    person = PairNet(PairNetConfig(depth=18, width=0.25, input_norm="person"))
    assert plain.state_dict().keys() == person.state_dict().keys()  # checkpoints load either way
    person.load_state_dict(plain.state_dict())
    x = images(4, 32)
    assert not torch.allclose(plain.eval()(x)["sync"], person.eval()(x)["sync"])
    pose = PoseNet.from_config(PoseNetConfig(depth=18, width=0.25, input_norm="person"))
    assert type(pose.backbone.input_norm).__name__ == "PersonStandardise"
    with pytest.raises(ValueError, match="choose one of: none, person, mask, person\\+mask"):
        PairNetConfig(input_norm="instance")


def test_mask_channel_marks_the_person_and_widens_only_the_stem():
    """input_norm="mask" / "person+mask": a fourth channel, +1 on the person and -1 on the background fill, so a
    person dressed like the fill still has an outline; the stem takes 4 channels, nothing else changes."""
    from syncssl.models.resnet import PersonStandardise, WithPersonMask
    x = torch.zeros(2, 3, 16, 16)
    x[:, :, 4:12, 5:9] = 0.05  # a person barely off the fill (0 after the op's normalisation)
    x[:, 0, 4:12, 5:9] = 0.0  # one channel exactly at the fill: the pixel is still the person's
    out = WithPersonMask()(x)
    assert out.shape == (2, 4, 16, 16) and torch.equal(out[:, :3], x)
    assert (out[:, 3, 4:12, 5:9] == 1).all() and (out[:, 3].sum() == 2 * (32 - (256 - 32)))
    torch.testing.assert_close(WithPersonMask(PersonStandardise())(x)[:, :3], PersonStandardise()(x))
    plain, masked = (PairNet(PairNetConfig(depth=18, width=0.25, input_norm=n)) for n in ("none", "person+mask"))
    assert plain.backbone.stem[0].weight.shape[1] == 3 and masked.backbone.stem[0].weight.shape[1] == 4
    differ = [k for k, v in masked.state_dict().items() if v.shape != plain.state_dict()[k].shape]
    assert differ == ["backbone.stem.0.weight"]
    assert masked.eval()(images(4, 32))["sync"].shape == (2, 2)
    pose = PoseNet.from_config(PoseNetConfig(depth=18, width=0.25, input_norm="mask"))
    assert pose.backbone.stem[0].weight.shape[1] == 4


def test_silhouette_input_sees_the_outline_and_nothing_of_the_colours():
    """input_norm="silhouette": one channel, the person mask (+1 / -1 on the fill); two people of one outline in
    other colours give the same embedding, other outlines another; the config needs the op's background fill."""
    from syncssl.models.resnet import Silhouette
    from syncssl.train.config import PretrainConfig, common_problems
    x = torch.zeros(2, 3, 32, 32)
    x[0, :, 4:28, 10:20] = 0.7  # a person in pale grey
    x[1, :, 4:28, 10:20] = torch.tensor([-0.9, 0.4, 0.1])[:, None, None]  # the same outline in strong colours
    out = Silhouette()(x)
    assert out.shape == (2, 1, 32, 32) and torch.equal(out[0], out[1]) and out.sum() == 2 * (2 * 240 - 1024)
    net = PairNet(PairNetConfig(depth=18, width=0.25, input_norm="silhouette")).eval()
    assert net.backbone.stem[0].weight.shape[1] == 1
    with torch.no_grad():
        e = net.embed(torch.cat([x, x[:1].roll(6, -1)]))
    torch.testing.assert_close(e[0], e[1])
    assert not torch.allclose(e[0], e[2])  # the outline moved
    cfg = PretrainConfig()
    cfg.model.input_norm = "silhouette"
    cfg.data.background = "off"
    assert any("input_norm=silhouette" in p for p in common_problems(cfg))


def test_grid_pooling_keeps_which_side_a_feature_is_on():
    """pool="grid": the last map averaged over 2x2 cells and flattened (4x the features, the same ones on
    average); a mirrored image puts its features in other cells."""
    torch.manual_seed(0)
    grid = PairNet(PairNetConfig(depth=18, width=0.25, pool="grid")).eval()
    x = images(4, 64)
    with torch.no_grad():
        cells = grid.embed(x).view(4, -1, 2, 2)
        mirrored = grid.embed(x.flip(-1)).view(4, -1, 2, 2)
        pooled = grid.backbone.forward_features(x)
    assert cells.shape[1] == grid.backbone.out_features and grid.embed_dim == 4 * grid.backbone.out_features
    torch.testing.assert_close(cells.mean((2, 3)), pooled.mean((2, 3)), atol=1e-5, rtol=1e-5)  # the same features
    assert grid(x)["sync"].shape == (2, 2)
    assert not torch.allclose(cells, mirrored, atol=1e-3)  # where the features lie differs
    with pytest.raises(ValueError, match="choose one of: avg, grid"):
        PairNetConfig(pool="max")
