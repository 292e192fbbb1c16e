"""The training losses against hand computations."""

import math

import pytest
import torch

from huvidpo.losses import LOSS_TYPES, denoising_loss, per_sample_mse, video_dpo_loss

METRIC_NAMES = {
    "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
    "mse/model_w", "mse/model_l", "mse/ref_w", "mse/ref_l",
}


def test_per_sample_mse_skips_the_conditioning_frame():
    target = torch.zeros(2, 4, 3, 2, 2)
    pred = torch.zeros(2, 4, 3, 2, 2)
    pred[:, :, 0] = 100.0  # frame 0 is the clean condition: ignored
    pred[0, :, 1] = 1.0  # sample 0: error 1 on one of two counted frames
    pred[1, :, 1:] = 2.0  # sample 1: error 4 everywhere counted
    assert torch.allclose(per_sample_mse(pred, target), torch.tensor([0.5, 4.0]))
    assert denoising_loss(pred, target).item() == pytest.approx(2.25)


def test_per_sample_mse_rejects_bad_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        per_sample_mse(torch.zeros(1, 4, 3, 2, 2), torch.zeros(1, 4, 2, 2, 2))
    with pytest.raises(ValueError, match="frames >= 2"):
        per_sample_mse(torch.zeros(1, 4, 1, 2, 2), torch.zeros(1, 4, 1, 2, 2))


# Two pairs, beta 10. Pair 0: Δ = (0.2-0.3) - (0.5-0.4) = -0.2, z = 0.1, βz = 1.
# Pair 1: Δ = (0.4-0.4) - (0.3-0.35) = 0.05, z = -0.025, βz = -0.25.
MSE = dict(
    model_mse_w=torch.tensor([0.2, 0.4]),
    model_mse_l=torch.tensor([0.5, 0.3]),
    ref_mse_w=torch.tensor([0.3, 0.4]),
    ref_mse_l=torch.tensor([0.4, 0.35]),
)
HAND_LOSS = {
    "sigmoid": (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.25))) / 2,
    "hinge": (max(0.0, 1 - 1.0) + max(0.0, 1 + 0.25)) / 2,
    "ipo": ((0.1 - 0.05) ** 2 + (-0.025 - 0.05) ** 2) / 2,
}


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_video_dpo_loss_matches_hand_computation(loss_type):
    loss, metrics = video_dpo_loss(**MSE, beta=10.0, loss_type=loss_type)
    assert loss.item() == pytest.approx(HAND_LOSS[loss_type], rel=1e-5)
    assert set(metrics) == METRIC_NAMES
    # chosen = -β/2 (mse_θ(w) - mse_ref(w)): pair 0: 0.5, pair 1: 0.0; rejected: pair 0: -0.5, pair 1: 0.25
    assert metrics["rewards/chosen"].item() == pytest.approx(0.25, abs=1e-6)
    assert metrics["rewards/rejected"].item() == pytest.approx(-0.125, abs=1e-6)
    assert metrics["rewards/margins"].item() == pytest.approx((1.0 - 0.25) / 2, abs=1e-6)
    assert metrics["rewards/accuracies"].item() == pytest.approx(0.5)
    assert metrics["mse/model_w"].item() == pytest.approx(0.3)
    assert metrics["mse/ref_l"].item() == pytest.approx(0.375)


@pytest.mark.parametrize("loss_type, expected", [("sigmoid", math.log(2)), ("hinge", 1.0), ("ipo", (1 / 100) ** 2)])
def test_equal_policy_and_reference(loss_type, expected):
    """Zero LoRA: policy MSE == reference MSE, so the sigmoid loss is log 2 and ties count one half."""
    mse_w, mse_l = torch.tensor([0.7, 0.2]), torch.tensor([0.1, 0.9])
    loss, metrics = video_dpo_loss(mse_w, mse_l, mse_w.clone(), mse_l.clone(), beta=50.0, loss_type=loss_type)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["rewards/accuracies"].item() == 0.5
    assert metrics["rewards/margins"].item() == 0.0


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_gradient_lowers_winner_error_and_skips_reference(loss_type):
    model_w = torch.tensor([0.5], requires_grad=True)
    model_l = torch.tensor([0.5], requires_grad=True)
    ref_w = torch.tensor([0.5], requires_grad=True)
    ref_l = torch.tensor([0.5], requires_grad=True)
    loss, _ = video_dpo_loss(model_w, model_l, ref_w, ref_l, beta=50.0, loss_type=loss_type)
    loss.backward()
    assert model_w.grad.item() > 0 and model_l.grad.item() < 0  # descent lowers mse(w), raises mse(l)
    assert ref_w.grad is None and ref_l.grad is None


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_rpo_alpha_adds_the_winners_denoising_loss(loss_type):
    """RPO: the DPO loss plus alpha times the winners' mean error; the loser's gradient is unchanged."""
    plain_w, rpo_w = (MSE["model_mse_w"].clone().requires_grad_() for _ in range(2))
    plain, _ = video_dpo_loss(plain_w, **{k: v for k, v in MSE.items() if k != "model_mse_w"}, beta=10.0, loss_type=loss_type)
    rpo, metrics = video_dpo_loss(rpo_w, **{k: v for k, v in MSE.items() if k != "model_mse_w"}, beta=10.0,
                                  loss_type=loss_type, rpo_alpha=2.0)
    assert rpo.item() == pytest.approx(plain.item() + 2.0 * (0.2 + 0.4) / 2)
    plain.backward()
    rpo.backward()
    assert torch.allclose(rpo_w.grad - plain_w.grad, torch.full((2,), 2.0 / 2))  # d(alpha * mean)/d(mse_w_i)
    assert metrics["rewards/accuracies"].item() == 0.5  # the metrics are the DPO ones


def test_rpo_anchor_replaces_the_winners_error_in_the_winners_term():
    """DPO on guided predictions anchors the winners' conditional error: the DPO part still reads the guided
    MSEs, the winners' term reads the anchor, and only the anchor gets that term's gradient."""
    model_w, anchor = MSE["model_mse_w"].clone().requires_grad_(), torch.tensor([0.05, 0.15], requires_grad=True)
    rest = {k: v for k, v in MSE.items() if k != "model_mse_w"}
    plain, plain_metrics = video_dpo_loss(MSE["model_mse_w"], **rest, beta=10.0)
    anchored, metrics = video_dpo_loss(model_w, **rest, beta=10.0, rpo_alpha=2.0, anchor_mse_w=anchor)
    assert anchored.item() == pytest.approx(plain.item() + 2.0 * (0.05 + 0.15) / 2)
    anchored.backward()
    assert torch.allclose(anchor.grad, torch.full((2,), 2.0 / 2))
    plain_w = MSE["model_mse_w"].clone().requires_grad_()
    video_dpo_loss(plain_w, **rest, beta=10.0)[0].backward()
    assert torch.allclose(model_w.grad, plain_w.grad)  # the guided MSE gets the DPO gradient alone
    assert metrics["rewards/margins"] == plain_metrics["rewards/margins"]
    with pytest.raises(ValueError, match="anchor_mse_w"):
        video_dpo_loss(model_w, **rest, rpo_alpha=1.0, anchor_mse_w=torch.tensor([0.1]))


def test_video_dpo_loss_rejects_bad_arguments():
    one = torch.tensor([0.1])
    with pytest.raises(ValueError, match="loss_type"):
        video_dpo_loss(one, one, one, one, loss_type="kto")
    with pytest.raises(ValueError, match="beta"):
        video_dpo_loss(one, one, one, one, beta=0.0)
    with pytest.raises(ValueError, match="rpo_alpha"):
        video_dpo_loss(one, one, one, one, rpo_alpha=-1.0)
    with pytest.raises(ValueError, match="one shape"):
        video_dpo_loss(one, torch.tensor([0.1, 0.2]), one, one)
