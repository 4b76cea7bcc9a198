"""KPR training outputs and losses (issue #18): forward_train, identity CE with label smoothing,
visibility-masked batch-hard triplet (the tracker's part distance), part-prediction loss."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kprtrack.reid.kpr.model import KPRArch, TrainOutputs
from micro_kpr import micro_model, register_micro_backbone

from kprtrack.reid.train.losses import (DEFAULT_WEIGHTS, KPRLoss, batch_hard_triplet_loss, identity_loss,
                                         masked_part_distance_torch, part_prediction_loss)
from kprtrack.tracker.part_distance import part_distance

MICRO = "test_micro_swinv2_train"
H, W, C, K, D = 64, 32, 5, 8, 16


@pytest.fixture(autouse=True)
def _micro_backbone(monkeypatch):
    register_micro_backbone(monkeypatch, MICRO)


def _model(**kw):
    return micro_model(MICRO, **{"height": H, "width": W, "dim": D, "num_classes": C, **kw})


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    arch = KPRArch(backbone=MICRO, height=H, width=W)
    images = torch.randn((n, 3, H, W), generator=g)
    prompt = torch.rand((n, arch.prompt_channels, H, W), generator=g)
    return images, prompt


def _check_shapes(out, n, hf, wf, shared=False):
    assert isinstance(out, TrainOutputs)
    for name in ("globl", "foreg", "backg", "bn_globl", "bn_foreg", "bn_backg"):
        assert tuple(getattr(out, name).shape) == (n, D), name
    assert tuple(out.parts.shape) == tuple(out.bn_parts.shape) == (n, K, D)
    assert tuple(out.conct.shape) == tuple(out.bn_conct.shape) == (n, K * D)
    for name in ("globl", "foreg", "backg", "conct"):
        assert tuple(getattr(out, f"{name}_logits").shape) == (n, C), name
    assert tuple(out.parts_logits.shape) == (n, K, C)
    assert tuple(out.pixel_logits.shape) == (n, 1 + K, hf, wf)
    assert tuple(out.visibility.shape) == (n, 1 + K)


@pytest.mark.slow
@pytest.mark.parametrize("shared", [False, True])
def test_forward_train_shapes_and_consistency_with_inference(shared):
    model = _model(shared_parts_id_classifier=shared)
    images, prompt = _batch(3)
    with torch.no_grad():
        out = model.forward_train(images, prompt)
        emb, vis = model(images, prompt)
    _check_shapes(out, 3, H // 4, W // 4, shared)
    # Inference = bn_foreg + parts + the same visibility (default test_embeddings).
    torch.testing.assert_close(emb[:, 0], out.bn_foreg)
    torch.testing.assert_close(emb[:, 1:], out.parts)
    torch.testing.assert_close(vis, out.visibility)
    # Logits come from each BNClassifier's classifier applied to the BN-neck output.
    torch.testing.assert_close(out.globl_logits, model.global_identity_classifier.classifier(out.bn_globl))
    torch.testing.assert_close(out.parts_logits[:, 2],
                               (model.parts_identity_classifier if shared else model.parts_identity_classifier[2])
                               .classifier(out.bn_parts[:, 2]))


def test_forward_train_without_classifiers_has_no_logits():
    model = _model(num_classes=0)
    with torch.no_grad():
        out = model.forward_train(*_batch(2))
    assert out.globl_logits is None and out.parts_logits is None
    with pytest.raises(ValueError, match="num_classes > 0"):
        KPRLoss(C)(out, torch.zeros(2, dtype=torch.long))


def test_inference_forward_matches_a_reference_implementation():
    """forward() is the pre-training-code inference path: recompute it from the modules by hand."""
    model = _model(test_embeddings=("globl", "bn_parts"), binary_visibility=False)
    images, prompt = _batch(2)
    with torch.no_grad():
        emb, vis = model(images, prompt)
        feats = model.msf(model.backbone_appearance_feature_extractor(images, prompt))
        prob = F.softmax(model.pixel_classifier(feats), dim=1)
        globl = model.global_after_pooling_dim_reduce(feats.mean(dim=(-2, -1)))
        parts = prob[:, 1:]
        pooled = torch.einsum("nmhw,nchw->nmc", parts, feats) / parts.sum(dim=(-2, -1)).unsqueeze(-1)
        red = model.parts_after_pooling_dim_reduce(pooled)
        bn = torch.stack([h(red[:, i]) for i, h in enumerate(model.parts_identity_classifier)], dim=1)
        v = prob.amax(dim=(2, 3))
    torch.testing.assert_close(emb[:, 0], globl)
    torch.testing.assert_close(emb[:, 1:], bn)
    torch.testing.assert_close(vis, torch.cat([v.amax(1, keepdim=True), v[:, 1:]], 1))


@pytest.mark.parametrize("kind", ["bool", "float", "none", "nonfinite"])
def test_torch_part_distance_equals_the_trackers(kind):
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(7, 5, 12)).astype(np.float32), rng.normal(size=(6, 5, 12)).astype(np.float32)
    if kind == "bool":
        va, vb = rng.random((7, 5)) > 0.5, rng.random((6, 5)) > 0.5
        va[0] = False  # a row without any visible part -> distance 1
    elif kind == "float":
        va, vb = rng.random((7, 5)).astype(np.float32), rng.random((6, 5)).astype(np.float32)
    elif kind == "nonfinite":
        va, vb = rng.random((7, 5)).astype(np.float32), rng.random((6, 5)).astype(np.float32)
        a[1, 2, 3] = np.nan
        b[2, 0] = 0.0  # all-zero part vector
        vb[3, 1] = np.inf
    else:
        va = vb = None
    expected = part_distance(a, va, b, vb)
    tv = lambda v: None if v is None else torch.from_numpy(np.asarray(v))  # noqa: E731
    got, common = masked_part_distance_torch(torch.from_numpy(a), tv(va), torch.from_numpy(b), tv(vb))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    if kind == "bool":
        assert not common[0].any() and np.all(expected[0] == 1.0)


def test_torch_part_distance_has_finite_gradients_on_identical_vectors():
    x = torch.randn(4, 3, 8, requires_grad=True)
    d, _ = masked_part_distance_torch(x, None, x, None)
    d.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.allclose(d.diagonal(), torch.zeros(4), atol=1e-6)


def test_label_smoothing_acts_and_equals_the_closed_form():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    pids = torch.tensor([0])
    logp = torch.log_softmax(logits, dim=1)[0]
    eps, c = 0.1, 3
    closed = -((1 - eps + eps / c) * logp[0] + eps / c * (logp[1] + logp[2]))
    assert float(identity_loss(logits, pids, 0.1)) == pytest.approx(float(closed), rel=1e-6)
    assert float(identity_loss(logits, pids, 0.0)) == pytest.approx(float(-logp[0]), rel=1e-6)
    # A confident correct prediction is penalised by smoothing (loss goes up) ...
    assert identity_loss(logits, pids, 0.1) > identity_loss(logits, pids, 0.0)
    # ... and the smoothed optimum is a finite logit gap: at a huge gap the smoothed loss grows.
    big = torch.tensor([[50.0, 0.0, 0.0]])
    assert identity_loss(big, pids, 0.1) > identity_loss(logits, pids, 0.1)
    assert float(identity_loss(big, pids, 0.0)) < 1e-6
    # KPRLoss passes its label_smoothing through.
    out = _fake_outputs(logits=logits.repeat(1, 1))
    _, t1 = KPRLoss(3, label_smoothing=0.1, weights=_only("globl", "id"))(out, pids)
    _, t0 = KPRLoss(3, label_smoothing=0.0, weights=_only("globl", "id"))(out, pids)
    assert float(t1["globl_id"]) == pytest.approx(float(closed), rel=1e-6)
    assert float(t0["globl_id"]) == pytest.approx(float(-logp[0]), rel=1e-6)


def _only(group, term):
    weights = {g: {t: 0.0 for t in terms} for g, terms in DEFAULT_WEIGHTS.items()}
    weights[group][term] = 1.0
    return weights


def _fake_outputs(logits=None, parts=None, vis=None, n=None):
    n = n or (len(logits) if logits is not None else len(parts))
    z = torch.zeros(n, D)
    parts = torch.zeros(n, K, D) if parts is None else parts
    k = parts.shape[1]
    return TrainOutputs(globl=z, foreg=z, backg=z, parts=parts, conct=parts.flatten(1), bn_globl=z, bn_foreg=z,
                        bn_backg=z, bn_parts=parts, bn_conct=parts.flatten(1), globl_logits=logits,
                        foreg_logits=logits, backg_logits=logits, conct_logits=logits, parts_logits=None,
                        pixel_logits=torch.zeros(n, 1 + k, 4, 2),
                        visibility=torch.ones(n, 1 + k) if vis is None else vis)


def _unit(angle):
    return torch.tensor([math.cos(angle), math.sin(angle)])


def test_triplet_margin_acts():
    # One part, 2-d features; pids [0, 0, 1]. Distances (tracker's, halved chord): d(a,p), d(a,n).
    def loss_for(neg_angle, margin, distance="tracker", scale=1.0):
        parts = scale * torch.stack([_unit(0.0), _unit(0.2), _unit(neg_angle)])[:, None, :]  # [3, 1, 2]
        out = _fake_outputs(parts=parts, vis=torch.ones(3, 2))
        _, terms = KPRLoss(2, triplet_margin=margin, weights=_only("parts", "tr"),
                           triplet_distance=distance)(out, torch.tensor([0, 0, 1]))
        return float(terms["parts_tr"])

    chord = lambda t: 2 * math.sin(t / 2) / 2  # noqa: E731  tracker distance between unit vectors at angle t
    # Hardest negative inside the margin: loss > 0 and equals the closed form.
    near = 0.5
    dp, dn0, dn1 = chord(0.2), chord(near), chord(near - 0.2)
    expected = (max(0, dp - dn0 + 0.3) + max(0, dp - dn1 + 0.3)) / 2  # anchors 0 and 1 (anchor 2 has no positive)
    assert loss_for(near, 0.3) == pytest.approx(expected, abs=1e-5) and expected > 0
    # Negative far outside the margin: zero loss.
    assert loss_for(math.pi, 0.3) == pytest.approx(0.0, abs=1e-7)
    # The margin shifts the (active) hinge one-for-one.
    assert loss_for(near, 0.4) - loss_for(near, 0.3) == pytest.approx(0.1, abs=1e-5)
    assert loss_for(math.pi, 0.0) == 0.0 and loss_for(math.pi, 1.5) > 0
    # The training default (upstream's scale): raw Euclidean part distance, not normalised nor halved.
    for scale in (1.0, 3.0):
        dp, dn0, dn1 = (scale * 2 * chord(t) for t in (0.2, near, near - 0.2))
        expected = (max(0, dp - dn0 + 0.3) + max(0, dp - dn1 + 0.3)) / 2
        assert loss_for(near, 0.3, "euclidean", scale) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="triplet_distance"):
        KPRLoss(2, triplet_distance="cosine")


def test_triplet_ignores_pairs_without_a_common_visible_part():
    d = torch.tensor([[0.0, 0.9, 0.1], [0.9, 0.0, 0.1], [0.1, 0.1, 0.0]])
    pids = torch.tensor([0, 0, 1])
    valid = torch.ones(3, 3, dtype=torch.bool)
    assert float(batch_hard_triplet_loss(d, pids, 0.3, valid)) > 0
    valid[0, 1] = valid[1, 0] = False  # the positive pair shares no visible part: no anchor has a positive
    assert float(batch_hard_triplet_loss(d, pids, 0.3, valid)) == 0.0


def test_part_prediction_loss_decreases_toward_labels_and_resizes_labels():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, K + 1, (2, 8, 4), generator=g)
    onehot = F.one_hot(labels, K + 1).permute(0, 3, 1, 2).float()
    base = torch.randn((2, K + 1, 8, 4), generator=g)
    losses = [float(part_prediction_loss(base + s * onehot, labels)) for s in (0.0, 1.0, 3.0)]
    assert losses[0] > losses[1] > losses[2]
    # Label smoothing: even a perfect prediction keeps a loss; without it the loss goes to 0.
    assert float(part_prediction_loss(30 * onehot, labels, 0.0)) < 1e-6
    assert float(part_prediction_loss(30 * onehot, labels, 0.1)) > 0.1
    # Labels at image resolution are resized by nearest neighbour to the logits' size.
    big = labels.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)  # [2, 32, 16]
    assert float(part_prediction_loss(base, big)) == pytest.approx(float(part_prediction_loss(base, labels)))


@pytest.mark.slow
def test_kpr_loss_default_terms_and_weights():
    model = _model()
    images, prompt = _batch(8)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    labels = torch.randint(0, K + 1, (8, H, W), generator=torch.Generator().manual_seed(1))
    model.train()
    out = model.forward_train(images, prompt)
    loss = KPRLoss(C)
    total, terms = loss(out, pids, labels)
    assert set(terms) == {"globl_id", "foreg_id", "conct_id", "parts_tr", "pixls_ce"}
    expected = terms["globl_id"] + terms["foreg_id"] + terms["conct_id"] + terms["parts_tr"] + 0.35 * terms["pixls_ce"]
    assert float(total.detach()) == pytest.approx(float(expected), rel=1e-5)
    total.backward()
    assert model.pixel_classifier.classifier.weight.grad is not None
    with pytest.raises(ValueError, match="unknown loss"):
        KPRLoss(C, weights={"parts": {"xx": 1}})
    _, terms = KPRLoss(C, weights={"globl": {"tr": 1.0}})(out, pids, None)
    assert "globl_tr" in terms and "pixls_ce" not in terms


@pytest.mark.slow
def test_a_few_sgd_steps_lower_every_loss_term():
    model = _model()
    images, prompt = _batch(8, seed=5)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    # Parsing labels as upstream's: mostly background, parts in horizontal bands (learnable).
    labels = torch.zeros((8, H, W), dtype=torch.long)
    labels[:, : H // 2, W // 4: 3 * W // 4] = (torch.arange(H // 2) * 4 // H + 1)[None, :, None]
    # Every term on (holistic triplets too); the pixel term at weight 1 so that 8 steps move it
    # (at 0.35 the identity terms dominate the shared features of this tiny random model).
    loss = KPRLoss(C, weights={"globl": {"tr": 1.0}, "foreg": {"tr": 1.0}, "pixls": {"ce": 1.0}})
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    history = []
    for _ in range(8):
        total, terms = loss(model.forward_train(images, prompt), pids, labels)
        history.append({k: float(v) for k, v in terms.items()})
        opt.zero_grad()
        total.backward()
        opt.step()
    first, last = history[0], history[-1]
    for name in first:
        assert last[name] < first[name], (name, first[name], last[name])
