"""Crosscoder: hand-computed losses, sparse kernels vs dense, training, checkpoints, analysis."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from auditlens.diffing._sparse import (
    batch_topk_select,
    selected_values,
    sparse_decode,
    sparse_encode,
)
from auditlens.diffing.crosscoder import CheckpointError, Crosscoder, CrosscoderConfig
from auditlens.diffing.crosscoder_analysis import (
    analyze_crosscoder,
    classify_latents,
    relative_decoder_norm,
)
from auditlens.diffing.crosscoder_train import (
    CrosscoderTrainConfig,
    CrosscoderTrainer,
    train_crosscoder,
)
from auditlens.diffing.latent_scaling import latent_scaling
from auditlens.diffing.synthetic import synthetic_pairs
from auditlens.errors import AuditlensError


def _hand_crosscoder(variant: str, **kw: object) -> Crosscoder:
    """d_model 1, two latents: latent 0 reads base (decoder [2, 0]), latent 1 reads ft."""
    cc = Crosscoder(CrosscoderConfig(d_model=1, n_latents=2, variant=variant, k=1, **kw))  # type: ignore[arg-type]
    with torch.no_grad():
        cc.W_enc_LSMD.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(2, 1, 2, 1))
        cc.b_enc_L.copy_(torch.tensor([0.0, -0.5]))
        cc.W_dec_LSMD.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]).view(2, 1, 2, 1))
        cc.b_dec_SMD.zero_()
    return cc


def test_l1_loss_hand_computed() -> None:
    cc = _hand_crosscoder("l1", l1_coefficient=0.1)
    x = cc.flatten_input(torch.tensor([[[1.0], [2.0]], [[0.0], [0.0]]]))
    out = cc.training_loss(x)
    # token 1: f = [1, 1.5], x̂ = [2, 1.5], mse 1 + 0.25; penalty 1·(2+0) + 1.5·(0+1) = 3.5
    # token 2: f = [0, 0]; batch means: mse 0.625, penalty 1.75, loss 0.625 + 0.1·1.75
    assert float(out.mse) == pytest.approx(0.625)
    assert float(out.sparsity) == pytest.approx(1.75)
    assert float(out.loss.detach()) == pytest.approx(0.8)
    assert out.l0 == pytest.approx(1.0)


def test_batchtopk_loss_hand_computed() -> None:
    cc = _hand_crosscoder("batchtopk")
    x = cc.flatten_input(torch.tensor([[[1.0], [2.0]], [[3.0], [0.0]]]))
    out = cc.training_loss(x)
    # scores relu(pre)·Σ||d||: token 1 [1·2, 1.5·1], token 2 [3·2, 0]; k·B = 2 kept: 6 and 2
    # x̂1 = 1·[2, 0], x̂2 = 3·[2, 0]; mse (1 + 4 + 9 + 0) / 2
    assert float(out.mse) == pytest.approx(7.0)
    assert float(out.loss.detach()) == pytest.approx(7.0)
    assert out.threshold == pytest.approx(2.0)
    assert out.l0 == pytest.approx(1.0)
    assert out.fired.tolist() == [True, False]


def test_auxk_loss_hand_computed() -> None:
    cc = _hand_crosscoder("batchtopk")
    x = cc.flatten_input(torch.tensor([[[1.0], [2.0]], [[3.0], [0.0]]]))
    out = cc.training_loss(x, dead=torch.tensor([False, True]))
    # residuals [-1, 2], [-3, 0]; dead latent 1 pre [1.5, -0.5] -> [0, 1.5], [0, 0]
    # aux = ((1 + 0.25) + 9) / 2 = 5.125, weighted by 1/32
    assert float(out.aux) == pytest.approx(5.125)
    assert float(out.loss.detach()) == pytest.approx(7.0 + 5.125 / 32)


def test_sparse_kernels_match_dense_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    b, d_in, n_lat, k = 64, 24, 50, 3
    x = torch.randn(b, d_in, generator=gen)
    w_enc = torch.randn(n_lat, d_in, generator=gen).requires_grad_(True)
    b_enc = (0.1 * torch.randn(n_lat, generator=gen)).requires_grad_(True)
    w_dec = torch.randn(n_lat, d_in, generator=gen).requires_grad_(True)
    weight = w_dec.detach().norm(dim=1)
    with torch.no_grad():
        pre = x @ w_enc.t()  # the bias is folded into the selection
    sel, thr = batch_topk_select(pre, weight, b * k, bias=b_enc.detach())
    values = selected_values(pre, sel, b_enc.detach())
    out = sparse_decode(sparse_encode(values, x, w_enc, b_enc, sel), w_dec, sel)
    loss = (out - x).pow(2).sum(-1).mean()
    grads = torch.autograd.grad(loss, [w_enc, b_enc, w_dec])
    dense_pre = x @ w_enc.t() + b_enc
    score = (dense_pre.relu() * weight).flatten()
    keep = torch.zeros_like(score, dtype=torch.bool)
    keep[torch.topk(score, b * k).indices] = True
    f = dense_pre.relu() * keep.view(b, n_lat)
    ref = (f @ w_dec - x).pow(2).sum(-1).mean()
    ref_grads = torch.autograd.grad(ref, [w_enc, b_enc, w_dec])
    assert sel.nnz == b * k
    assert thr == pytest.approx(float(score[keep].min().detach()))
    torch.testing.assert_close(loss, ref)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    for guess in (0.9 * thr, 3.0 * thr):  # a good guess (one pass), a bad one (fallback)
        again, cut = batch_topk_select(pre, weight, b * k, guess=guess, bias=b_enc.detach())
        assert torch.equal(again.rows, sel.rows) and torch.equal(again.cols, sel.cols)
        assert cut == thr


def test_relative_norm_and_classes() -> None:
    cc = Crosscoder(CrosscoderConfig(d_model=2, n_latents=4, variant="l1"))
    with torch.no_grad():
        norms = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.5]])  # base, ft
        cc.W_dec_LSMD.copy_(norms.view(4, 1, 2, 1) * torch.tensor([1.0, 0.0]))
    rel = relative_decoder_norm(cc)
    torch.testing.assert_close(rel, torch.tensor([0.0, 1.0, 0.5, 0.75]))
    assert classify_latents(rel) == ["ft_only", "base_only", "shared", "other"]


def test_latent_scaling_flags_false_ft_only_latent() -> None:
    """Latent 0: ft decoder v, base decoder 0, but v is in both models (a false ft-only latent).
    Latent 1: ft decoder u, base decoder 0, u only in the fine-tuned model (truly ft-only)."""
    d = 8
    u, v = torch.zeros(d), torch.zeros(d)
    u[0], v[1] = 1.0, 1.0
    cc = Crosscoder(CrosscoderConfig(d_model=d, n_latents=2, variant="l1"))
    with torch.no_grad():
        cc.W_enc_LSMD.zero_()
        cc.W_enc_LSMD[0, 0, 1] = v
        cc.W_enc_LSMD[1, 0, 1] = u
        cc.b_enc_L.zero_()
        cc.W_dec_LSMD.zero_()
        cc.W_dec_LSMD[0, 0, 1] = v
        cc.W_dec_LSMD[1, 0, 1] = u
        cc.b_dec_SMD.zero_()
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(400, 1, generator=gen) * (torch.rand(400, 1, generator=gen) < 0.3)
    c = torch.rand(400, 1, generator=gen) * (torch.rand(400, 1, generator=gen) < 0.3)
    base, ft = a * v, a * v + c * u
    data = [torch.stack([base, ft], dim=1)]
    ls = latent_scaling(cc, data)
    assert float(ls.ratio_error[0]) == pytest.approx(1.0, abs=1e-5)
    assert float(ls.ratio_error[1]) == pytest.approx(0.0, abs=1e-5)
    analysis = analyze_crosscoder(cc, data)
    assert analysis.norm_class == ["ft_only", "ft_only"]
    assert analysis.final_class == ["shared", "ft_only"]


@pytest.mark.parametrize("variant", ["batchtopk", "l1"])
def test_training_recovers_synthetic_features(variant: str) -> None:
    syn = synthetic_pairs(4096, 32, n_shared=12, n_ft_only=2, n_base_only=1, seed=1)
    cfg = CrosscoderConfig(
        d_model=32, n_latents=64, k=2, variant=variant, l1_coefficient=0.3, dead_after_tokens=8192
    )
    train = CrosscoderTrainConfig(n_steps=500, lr=3e-3, log_every=100)
    run = train_crosscoder(syn.batches(128), cfg, train, progress=False)
    assert run.steps == 500 and run.tokens == 500 * 128 and len(run.log) == 5
    assert run.final()["fve_finetuned"] > 0.9
    analysis = analyze_crosscoder(run.crosscoder, syn.batches(512, repeat=False))
    dirs = run.crosscoder.decoder_directions()
    for want, side, cls in [
        (syn.ft_only, "finetuned", "ft_only"),
        (syn.base_only, "base", "base_only"),
    ]:
        for vec in want:
            cos = torch.nn.functional.cosine_similarity(dirs[side], vec[None], dim=-1)
            j = int(cos.argmax())
            assert float(cos[j]) > 0.9
            assert analysis.final_class[j] == cls


def test_encode_threshold_matches_batch_selection_and_shapes() -> None:
    syn = synthetic_pairs(4096, 16, seed=2)
    cfg = CrosscoderConfig(d_model=16, n_latents=32, k=2)
    train = CrosscoderTrainConfig(n_steps=300, lr=3e-3)
    run = train_crosscoder(syn.batches(256), cfg, train, progress=False)
    cc = run.crosscoder
    x = syn.acts[:2048]
    by_threshold = cc.encode(x)
    by_batch = cc.encode(x, batch_topk=True)
    assert float((by_batch > 0).sum(-1).float().mean()) == pytest.approx(2.0)
    assert 1.0 < float((by_threshold > 0).sum(-1).float().mean()) < 4.0
    assert torch.equal(cc.encode(x.unsqueeze(1)), by_threshold)  # [b, n_sites, 2, d] too
    assert cc.forward(x).shape == (2048, 1, 2, 16)
    with pytest.raises(AuditlensError, match="expected"):
        cc.encode(torch.zeros(4, 3, 16))


def test_save_load_roundtrip_and_corruption(tmp_path: Path) -> None:
    syn = synthetic_pairs(1024, 8, n_shared=4, seed=3)
    cfg = CrosscoderConfig(d_model=8, n_latents=16, k=2, sites=("blocks.0.hook_resid_post",))
    cc = train_crosscoder(
        syn.batches(128), cfg, CrosscoderTrainConfig(n_steps=20), progress=False
    ).crosscoder
    cc.save(tmp_path / "cc")
    back = Crosscoder.load(tmp_path / "cc")
    assert back.config == cc.config
    torch.testing.assert_close(back.encode(syn.acts), cc.encode(syn.acts))
    weights = tmp_path / "cc" / "crosscoder.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"garbage!")
    with pytest.raises(CheckpointError, match="checksum"):
        Crosscoder.load(tmp_path / "cc")
    (tmp_path / "cc" / "crosscoder.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        Crosscoder.load(tmp_path / "cc")


class _Interrupt(Exception):
    pass


def test_resume_gives_the_uninterrupted_result(tmp_path: Path) -> None:
    syn = synthetic_pairs(2048, 8, n_shared=6, seed=4)
    cfg = CrosscoderConfig(d_model=8, n_latents=16, k=2, dead_after_tokens=512)
    train = CrosscoderTrainConfig(
        n_steps=24, lr=3e-3, log_every=4, checkpoint_every=5, decay_fraction=0.5
    )
    whole = train_crosscoder(syn.batches(64, seed=7), cfg, train, progress=False)

    def stop_at_12(trainer: CrosscoderTrainer) -> None:
        if trainer.step_count == 12:
            raise _Interrupt

    ckpt = tmp_path / "ckpt"
    with pytest.raises(_Interrupt):
        train_crosscoder(
            syn.batches(64, seed=7),
            cfg,
            train,
            checkpoint_dir=ckpt,
            progress=False,
            callback=stop_at_12,
        )
    with pytest.raises(CheckpointError, match="resume=True"):
        train_crosscoder(syn.batches(64, seed=7), cfg, train, checkpoint_dir=ckpt, progress=False)
    resumed = train_crosscoder(
        syn.batches(64, seed=7), cfg, train, checkpoint_dir=ckpt, resume=True, progress=False
    )
    assert resumed.resumed_from == 10  # the last checkpoint before the interruption
    assert resumed.tokens == 14 * 64
    for (name, a), (_, b) in zip(
        whole.crosscoder.state_dict().items(), resumed.crosscoder.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    assert resumed.log == whole.log


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    syn = synthetic_pairs(1024, 8, n_shared=4, seed=5)
    cfg = CrosscoderConfig(d_model=8, n_latents=16, k=2)
    train = CrosscoderTrainConfig(n_steps=6, checkpoint_every=3)
    ckpt = tmp_path / "ckpt"
    train_crosscoder(syn.batches(64), cfg, train, checkpoint_dir=ckpt, progress=False)
    optim = ckpt / "checkpoint" / "optimizer.safetensors"
    optim.write_bytes(optim.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors fails its checksum"):
        train_crosscoder(
            syn.batches(64), cfg, train, checkpoint_dir=ckpt, resume=True, progress=False
        )
    (ckpt / "checkpoint" / "trainer.json").write_text('{"format": 1}')
    with pytest.raises(CheckpointError, match="malformed"):
        CrosscoderTrainer.from_checkpoint(ckpt)


def test_config_validation() -> None:
    with pytest.raises(AuditlensError, match="variant"):
        CrosscoderConfig(d_model=4, n_latents=8, variant="topk")  # type: ignore[arg-type]
    with pytest.raises(AuditlensError, match="k must"):
        CrosscoderConfig(d_model=4, n_latents=8, k=0)
    with pytest.raises(AuditlensError, match="site names"):
        CrosscoderConfig(d_model=4, n_latents=8, k=2, n_sites=2, sites=("a",))
    with pytest.raises(AuditlensError, match="n_steps"):
        CrosscoderTrainConfig(n_steps=0)
    with pytest.raises(AuditlensError, match="normalize"):
        CrosscoderTrainConfig(n_steps=1, normalize="yes")


def test_multi_site_crosscoder_trains_and_reports_per_site_fve() -> None:
    syn = synthetic_pairs(1024, 8, n_shared=4, seed=6)
    data = (torch.stack([b, 0.5 * b], dim=1) for b in syn.batches(128))
    cfg = CrosscoderConfig(d_model=8, n_latents=16, n_sites=2, k=2, sites=("s0", "s1"))
    run = train_crosscoder(
        data, cfg, CrosscoderTrainConfig(n_steps=10, log_every=10), progress=False
    )
    assert {"fve_base@s0", "fve_finetuned@s1"} <= set(run.final())
    assert run.crosscoder.decoder_directions("s1")["base"].shape == (16, 8)
    assert relative_decoder_norm(run.crosscoder, "s0").shape == (16,)
