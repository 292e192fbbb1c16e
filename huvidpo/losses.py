"""The two training losses of HuViDPO, as pure tensor functions (no model, no scheduler).

What is unusual here:
- For a model conditioned on a first frame (HuViDPO), frame 0 of every training clip is the clean conditioning
  frame (the sampler keeps it clean too), so every loss averages over frames 1..N-1 only: per sample, the mean
  over channels, frames >= 1, height and width. A model without that condition (Wan, AnimateDiff) averages over
  every frame (``exclude_first_frame=False``; the backend's ``first_frame_condition`` says which).
- The DPO loss takes per-sample MSEs rather than log-probabilities. For a diffusion model the
  implicit log-likelihood ratio of a sample is (up to a positive, timestep-dependent weight that
  Diffusion-DPO folds into beta) minus its denoising error relative to the reference, which gives
  Diffusion-DPO's loss (Wallace et al. 2023, Eq. 14, "L(θ) = -log σ(-βT ω(λ_t)(...))"), applied to
  videos by HuViDPO (arXiv 2502.01690). For a flow-matching model the errors are those of the predicted velocity
  (Flow-DPO): see :func:`video_dpo_loss` for what that does to beta.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from huvidpo.training.config import LOSS_TYPES


def per_sample_mse(model_pred: torch.Tensor, target: torch.Tensor, exclude_first_frame: bool = True) -> torch.Tensor:
    """``(b,)``: the MSE of each sample over channels, frames, height and width.

    Both tensors are latents ``b c f h w``. With ``exclude_first_frame`` (a model conditioned on a clean frame 0),
    frame 0 is left out and ``f >= 2``; without, every frame counts.
    """
    if model_pred.shape != target.shape:
        raise ValueError(f"Prediction {tuple(model_pred.shape)} and target {tuple(target.shape)} differ in shape.")
    least = 2 if exclude_first_frame else 1
    if model_pred.ndim != 5 or model_pred.shape[2] < least:
        raise ValueError(
            f"Expected video latents (batch, channels, frames >= {least}, height, width); got {tuple(model_pred.shape)}."
        )
    first = 1 if exclude_first_frame else 0
    error = (model_pred[:, :, first:].float() - target[:, :, first:].float()) ** 2
    return error.mean(dim=(1, 2, 3, 4))


def denoising_loss(model_pred: torch.Tensor, target: torch.Tensor, exclude_first_frame: bool = True) -> torch.Tensor:
    """The plain (stage-1 / SFT) loss: the mean of :func:`per_sample_mse` over the batch."""
    return per_sample_mse(model_pred, target, exclude_first_frame).mean()


def video_dpo_loss(
    model_mse_w: torch.Tensor,
    model_mse_l: torch.Tensor,
    ref_mse_w: torch.Tensor,
    ref_mse_l: torch.Tensor,
    beta: float = 50.0,
    loss_type: str = "sigmoid",
    rpo_alpha: float = 0.0,
    anchor_mse_w: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""The video DPO loss of a batch of (winner, loser) pairs and its metrics.

    Inputs are per-pair MSEs ``(b,)`` (:func:`per_sample_mse`) of the policy (θ) and the reference on the
    winner (w) and the loser (l), computed with the same noise and timestep for w and l. With

        Δ = (mse_θ(w) − mse_ref(w)) − (mse_θ(l) − mse_ref(l))
        z = −Δ / 2            (the implicit log-ratio margin, trl's ``logits``)

    the loss types are, per pair, averaged over the batch:

    - ``sigmoid`` (HuViDPO / Diffusion-DPO, Wallace et al. 2023, Eq. 14; DPO, Rafailov et al. 2023, Eq. 7):
      ``L = −log σ(β z) = −log σ(−β/2 · Δ)``. With zero LoRA Δ = 0 and L = log 2.
    - ``hinge`` (SLiC, Zhao et al. 2023, Eq. 10, as in trl): ``L = max(0, 1 − β z)``.
    - ``ipo`` (IPO, Azar et al. 2023, Eq. 17, as in trl): ``L = (z − 1 / (2β))²``; here β is IPO's τ,
      the regularisation strength: the pair's margin z is regressed to ``1/(2β)``, so a larger β asks for
      a smaller margin.

    ``rpo_alpha`` > 0 adds ``rpo_alpha · mse_θ(w)``, the winners' plain denoising loss (RPO, Pang et al. 2024,
    Eq. 3: DPO plus the chosen answer's NLL; trl's ``rpo_alpha``). The DPO term alone only asks the winner's
    error to rise less than the loser's, and on pairs it separates easily the policy lets both rise; the
    winner term holds the policy to what it denoises well. 0 (the default) is the paper's loss.
    ``anchor_mse_w`` (``(b,)``, default ``model_mse_w``) is the winners' MSE that term weighs: DPO on guided
    predictions passes the conditional prediction's, since a guided prediction is not a denoiser and pulling it
    onto the data trains the guidance away.

    Flow matching (Flow-DPO, Liu et al. 2025, "Improving Video Generation with Human Feedback", arXiv 2501.13918):
    for a model trained on the velocity ``v = noise - x0`` at ``x_t = (1 - σ) x0 + σ noise`` the inputs are
    velocity MSEs and the loss is unchanged. Beta convention: one constant β for every timestep,
    applied to the per-sample *mean* squared error, with the same ``β/2`` as above, so β = 50 means the same
    formula in both families. It does not mean the same strength: at one noisy sample an epsilon error is
    ``(1 - σ)`` times the velocity error, so velocity MSEs are ``1 / (1 - σ)²`` times larger and a constant β on
    them weighs noisy timesteps more than on epsilon MSEs; Diffusion-DPO folds its timestep weight ω(λ_t) into β
    the same way (constant), and we keep that rather than reweight per σ, so a β tuned on one family is a
    starting point, not a setting to copy, for the other.

    Metrics (detached scalars, the names trl uses):

    - ``rewards/chosen`` = mean of −β/2 · (mse_θ(w) − mse_ref(w)); ``rewards/rejected`` likewise on l;
    - ``rewards/margins`` = mean of chosen − rejected (= β z);
    - ``rewards/accuracies`` (implicit accuracy) = share of pairs with chosen > rejected, ties counting
      one half (as in the Diffusion-DPO training script), so an untrained LoRA scores 0.5;
    - ``mse/model_w``, ``mse/model_l``, ``mse/ref_w``, ``mse/ref_l``: batch means of the inputs.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"Unknown DPO loss_type {loss_type!r}: use one of {list(LOSS_TYPES)}.")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}.")
    if rpo_alpha < 0:
        raise ValueError(f"rpo_alpha must be >= 0, got {rpo_alpha}.")
    shapes = {tuple(t.shape) for t in (model_mse_w, model_mse_l, ref_mse_w, ref_mse_l)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"Expected four per-pair MSE vectors of one shape (b,); got shapes {sorted(shapes)}.")
    ref_mse_w, ref_mse_l = ref_mse_w.detach(), ref_mse_l.detach()

    model_diff = model_mse_w - model_mse_l
    ref_diff = ref_mse_w - ref_mse_l
    margin = -0.5 * (model_diff - ref_diff)  # z
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * margin)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * margin)
    else:
        losses = (margin - 1 / (2 * beta)) ** 2
    if rpo_alpha:
        anchor = model_mse_w if anchor_mse_w is None else anchor_mse_w
        if anchor.shape != model_mse_w.shape:
            raise ValueError(f"anchor_mse_w {tuple(anchor.shape)} must have the shape of model_mse_w {tuple(model_mse_w.shape)}.")
        losses = losses + rpo_alpha * anchor

    with torch.no_grad():
        chosen = -0.5 * beta * (model_mse_w - ref_mse_w)
        rejected = -0.5 * beta * (model_mse_l - ref_mse_l)
        accuracy = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
        metrics = {
            "rewards/chosen": chosen.mean(),
            "rewards/rejected": rejected.mean(),
            "rewards/accuracies": accuracy.mean(),
            "rewards/margins": (chosen - rejected).mean(),
            "mse/model_w": model_mse_w.detach().mean(),
            "mse/model_l": model_mse_l.detach().mean(),
            "mse/ref_w": ref_mse_w.mean(),
            "mse/ref_l": ref_mse_l.mean(),
        }
    return losses.mean(), metrics
