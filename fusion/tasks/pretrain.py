"""Self-supervised pretraining: MultiMAE reconstruction plus fusion contrast (Sec. III-D to III-F).

Per batch: draw which modality tokens the encoder sees (`fusion.pretraining.masking`),
encode the visible tokens with `fusion.MaskedFusionViT`, reconstruct every present
modality from the fusion tokens with a shallow decoder per modality
(`fusion.pretraining.decoders`), and score only the hidden patches (eq. 4;
`fusion.pretraining.losses`). The pooled modality vectors are contrasted with their
fusion vectors (eq. 5); the total is ``reconstruction + contrastive_weight * contrastive`` (eq.
6 uses weight 1; the authors' code 0.3). ``contrastive=False`` trains reconstruction only, the
paper's "Fine. w/ G." backbone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import lightning as L
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from fusion.backbone import FusionOutput, MaskedFusionViT
from fusion.backbone.variants import BackboneVariant
from fusion.modality import ModalityConfig, parse_modalities
from fusion.pretraining.decoders import PatchDecoder
from fusion.pretraining.losses import (
    ReconstructionLoss,
    info_nce,
    masked_patch_loss,
    normalize_patches,
    patchify,
    unpatchify,
)
from fusion.pretraining.masking import sample_visible_tokens
from fusion.pretraining.visualization import reconstruction_figure
from fusion.run.optim import (
    WarmupCosineSchedule,
    scaled_learning_rate,
    training_steps,
    weight_decay_groups,
)
from fusion.tasks.batches import split_batch, token_availability

HEIGHT_MODALITIES = ("dem", "dsm", "height", "ndsm")
"""Modality names reconstructed with an L1 loss by default (heights, as in MultiMAE's depth)."""


@dataclass
class ReconstructionBatch:
    """What one batch's figure needs: inputs, presence, visibility and decoder outputs.

    Attributes:
        inputs: name -> ``[B, C, H, W]`` (class ids ``[B, 1, H, W]`` for categorical maps).
        present: name -> ``bool [B]``.
        visible: name -> ``bool [B, L]`` tokens the encoder saw.
        predictions: name -> decoder output ``[B, L, P*P*C]`` (``[B, L, P*P, K]`` logits).
        grid_size: patch grid ``(h, w)``.
    """

    inputs: dict[str, Tensor]
    present: dict[str, Tensor]
    visible: dict[str, Tensor]
    predictions: dict[str, Tensor]
    grid_size: tuple[int, int]

    def detached(self) -> ReconstructionBatch:
        """A CPU copy outside the autograd graph."""

        def cpu(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
            return {name: t.detach().cpu() for name, t in tensors.items()}

        predictions = {name: t.float() for name, t in cpu(self.predictions).items()}
        return ReconstructionBatch(
            cpu(self.inputs), cpu(self.present), cpu(self.visible), predictions, self.grid_size
        )


def default_reconstruction_loss(name: str, categorical: bool) -> ReconstructionLoss:
    """Eq. 4: cross-entropy for class maps, L1 for heights, MSE for optical and SAR."""
    if categorical:
        return "ce"
    return "l1" if name.lower() in HEIGHT_MODALITIES else "mse"


class PretrainTask(L.LightningModule):
    """MultiMAE-style masked reconstruction with contrastive fusion alignment.

    Args:
        modalities: name -> channels or ``("categorical", n)``; set from the DataModule's
            ``modality_specs`` by the command line.
        img_size: image side the learned fusion tokens are made for.
        patch_size: patch side (the paper: 16).
        embed_dim: backbone width (ViT-T: 192).
        depth: backbone blocks (ViT-T: 12).
        num_heads: backbone heads (ViT-T: 3).
        variant: the backbone of the paper's tables (`fusion.backbone.variants`):
            ``"proposed"``, ``"multivit"`` (the MultiViT baseline), ``"no_masked_attention"`` or
            ``"no_modality_attention"`` (the ablations "w/o mask" and "w/o attention").
        drop_path_rate: stochastic depth of the backbone.
        visible_fraction: share of the present modality tokens the encoder sees (the paper: 1/2).
        dirichlet_alpha: concentration of the per-sample modality shares (the paper: 1).
        decoder_dim: decoder width (256).
        decoder_depth: decoder Transformer blocks (2).
        decoder_heads: decoder attention heads.
        reconstruction_losses: per-modality override of the loss (``"mse"``, ``"l1"``,
            ``"ce"``); the default follows eq. 4 (see `default_reconstruction_loss`).
        normalize_targets: standardize each target patch before the loss (MAE option; off).
        contrastive: add the contrastive loss (eq. 5); False for reconstruction only.
        contrastive_weight: weight ``w`` of the contrastive loss.
        temperature: InfoNCE temperature ``tau``.
        base_lr: learning rate per 256 samples (lr = base_lr * batch / 256).
        weight_decay: AdamW weight decay (not on norms, biases and learned tokens).
        betas: AdamW betas.
        warmup_epochs: epochs of linear warm-up before the cosine decay.
        validation_seed: seed of the validation masks (the same every epoch).
        figure_samples: samples shown in the reconstruction figure.
    """

    def __init__(
        self,
        modalities: dict[str, ModalityConfig],
        img_size: int = 256,
        patch_size: int = 16,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        variant: BackboneVariant = "proposed",
        drop_path_rate: float = 0.0,
        visible_fraction: float = 0.5,
        dirichlet_alpha: float = 1.0,
        decoder_dim: int = 256,
        decoder_depth: int = 2,
        decoder_heads: int = 8,
        reconstruction_losses: dict[str, ReconstructionLoss] | None = None,
        normalize_targets: bool = False,
        contrastive: bool = True,
        contrastive_weight: float = 1.0,
        temperature: float = 0.1,
        base_lr: float = 1e-4,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_epochs: float = 40,
        validation_seed: int = 0,
        figure_samples: int = 2,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone = MaskedFusionViT.from_variant(
            modalities,
            variant,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            drop_path_rate=drop_path_rate,
        )
        specs = parse_modalities(modalities)
        self.modality_names = tuple(spec.name for spec in specs)
        self.num_classes = {spec.name: spec.num_classes for spec in specs if spec.is_categorical}
        self.decoders = nn.ModuleDict(
            {
                spec.name: PatchDecoder(
                    embed_dim,
                    patch_size,
                    channels=spec.channels,
                    num_classes=spec.num_classes if spec.is_categorical else None,
                    decoder_dim=decoder_dim,
                    depth=decoder_depth,
                    num_heads=decoder_heads,
                )
                for spec in specs
            }
        )
        overrides = reconstruction_losses or {}
        unknown = set(overrides) - set(self.modality_names)
        if unknown:
            raise ValueError(f"reconstruction_losses names unknown modalities {sorted(unknown)}")
        self.loss_kinds: dict[str, ReconstructionLoss] = {
            spec.name: overrides.get(spec.name)
            or default_reconstruction_loss(spec.name, spec.is_categorical)
            for spec in specs
        }
        self._figure_batch: ReconstructionBatch | None = None

    # -- the method, step by step ------------------------------------------------------------
    def draw_visibility(
        self,
        present: Mapping[str, Tensor],
        num_positions: int,
        available: Mapping[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """MultiMAE visibility per modality ``[B, L]`` for the modalities of a batch.

        Args:
            present: name -> ``bool [B]``.
            num_positions: patch positions ``L``.
            available: optional name -> ``bool [B, L]``, the tokens that hold data
                (`fusion.tasks.batches.token_availability`); only those can be visible.

        Returns:
            name -> ``bool [B, L]``, the tokens the encoder sees.
        """
        names = list(present)
        matrix = torch.stack([present[n] for n in names], dim=1)
        usable = None if available is None else torch.stack([available[n] for n in names], 1)
        visible = sample_visible_tokens(
            matrix,
            num_positions,
            self.hparams.visible_fraction,
            self.hparams.dirichlet_alpha,
            available=usable,
        )
        return {name: visible[:, i] for i, name in enumerate(names)}

    def reconstruction_losses(
        self,
        inputs: Mapping[str, Tensor],
        present: Mapping[str, Tensor],
        fusion: Tensor,
        visible: Mapping[str, Tensor],
        valid: Mapping[str, Tensor] | None = None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Eq. 4 per modality, on hidden patches of present modalities.

        Args:
            inputs: name -> ``[B, C, H, W]`` images (class ids ``[B, 1, H, W]``).
            present: name -> ``bool [B]``.
            fusion: fusion tokens ``[B, L, D]``.
            visible: name -> ``bool [B, L]`` tokens the encoder saw.
            valid: optional name -> ``bool [B, H, W]``, False on pixels without data, which
                the loss skips. The no-data id of a class map (``num_classes``) is skipped
                with or without it.

        Returns:
            Loss per modality, and the decoders' raw predictions per modality.
        """
        patch = self.hparams.patch_size
        losses, predictions = {}, {}
        for name, image in inputs.items():
            prediction = self.decoders[name](fusion)
            target = patchify(image, patch)
            kind = self.loss_kinds[name]
            if self.hparams.normalize_targets and kind != "ce":
                target = normalize_patches(target.float())
            hidden = present[name][:, None] & ~visible[name]  # [B, L]
            pixels = None
            if valid is not None:  # [B, L, P*P] -> one flag per target value (channels last)
                pixels = patchify(valid[name][:, None], patch)
                pixels = pixels.repeat_interleave(target.shape[-1] // pixels.shape[-1], dim=-1)
            if name in self.num_classes:  # no-data ids are never a cross-entropy target
                known = target < self.num_classes[name]
                target = target.masked_fill(~known, 0)
                pixels = known if pixels is None else pixels & known
            losses[name] = masked_patch_loss(prediction, target, hidden, kind, pixels)
            predictions[name] = prediction
        return losses, predictions

    def contrastive_losses(self, output: FusionOutput) -> dict[str, Tensor]:
        """Eq. 5 per modality, over the samples where the modality has visible tokens."""
        losses = {}
        for name, valid in output.vectors_valid.items():
            if int(valid.sum()) < 2:
                continue  # a positive needs at least one negative
            losses[name] = info_nce(
                output.modality_vectors[name][valid],
                output.fusion_vectors[name][valid],
                self.hparams.temperature,
            )
        return losses

    def shared_step(
        self, batch: dict[str, Any], stage: str, batch_idx: int
    ) -> tuple[Tensor, ReconstructionBatch]:
        """Mask, encode, reconstruct and contrast one batch; log every term.

        Training masks come from the global random state; validation and test masks from
        ``validation_seed + batch_idx`` (the same every epoch, leaving the global state alone).
        Visible tokens are drawn among the tokens that hold data (``batch["valid"]``).
        """
        inputs, present = split_batch(batch, self.modality_names)
        patch = self.hparams.patch_size
        available = token_availability(batch, self.modality_names, list(inputs), patch)
        height, width = next(iter(inputs.values())).shape[-2:]
        num_positions = (height // patch) * (width // patch)
        if stage == "train":
            visible = self.draw_visibility(present, num_positions, available)
        else:  # the same masks every epoch, without touching the training random state
            cuda = list(range(torch.cuda.device_count())) if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(self.hparams.validation_seed + batch_idx)
                visible = self.draw_visibility(present, num_positions, available)
        visible = {name: v.to(self.device) for name, v in visible.items()}
        output = self.backbone(inputs, present=present, visible=visible)
        valid = None
        if "valid" in batch:  # pixels without data stay out of the reconstruction loss
            columns = {name: i for i, name in enumerate(self.modality_names)}
            valid = {name: batch["valid"][:, columns[name]] for name in inputs}
        reconstruction, predictions = self.reconstruction_losses(
            inputs, present, output.fusion, output.visible, valid
        )
        total = reconstruction_total = torch.stack(list(reconstruction.values())).sum()
        batch_size = len(batch["present"])
        train = stage == "train"  # evaluation means are averaged over all processes (DDP)
        log = partial(
            self.log, batch_size=batch_size, on_step=train, on_epoch=True, sync_dist=not train
        )
        if self.hparams.contrastive:
            contrastive = self.contrastive_losses(output)
            if contrastive:
                contrastive_total = torch.stack(list(contrastive.values())).sum()
                total = total + self.hparams.contrastive_weight * contrastive_total
                log(f"{stage}/contrastive", contrastive_total)
                for name, value in contrastive.items():
                    log(f"{stage}/contrastive_{name}", value)
        log(f"{stage}/loss", total, prog_bar=True)
        log(f"{stage}/reconstruction", reconstruction_total)
        for name, value in reconstruction.items():
            log(f"{stage}/reconstruction_{name}", value)
        parts = ReconstructionBatch(inputs, present, output.visible, predictions, output.grid_size)
        return total, parts

    # -- Lightning hooks ---------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimization step's loss."""
        loss, _ = self.shared_step(batch, "train", batch_idx)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Validation loss with fixed masks; keeps the first batch for the figure."""
        _, parts = self.shared_step(batch, "val", batch_idx)
        if batch_idx == 0:
            self._figure_batch = parts.detached()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Test loss with fixed masks."""
        self.shared_step(batch, "test", batch_idx)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Embed a batch with every token that holds data visible: the pretrained features.

        Patches without data in a modality (``batch["valid"]``) are hidden for it, as in
        pretraining; the tokens stay on the grid (no packing).

        Returns:
            ``name`` (tile names), ``fusion`` tokens ``[B, L, D]`` and, per modality present
            in the batch, the pooled ``modality_vectors`` and ``fusion_vectors`` ``[B, D]``
            (zero where the sample lacks the modality).
        """
        inputs, present = split_batch(batch, self.modality_names)
        available = token_availability(
            batch, self.modality_names, list(inputs), self.hparams.patch_size
        )
        output = self.backbone(inputs, present=present, visible=available, pack=False)
        return {
            "name": batch.get("name"),
            "fusion": output.fusion,
            "modality_vectors": output.modality_vectors,
            "fusion_vectors": output.fusion_vectors,
        }

    def reconstruction_figure(self) -> Figure | None:
        """Inputs, visible tokens and reconstructions of the first validation batch."""
        if self._figure_batch is None:
            return None
        parts, patch = self._figure_batch, self.hparams.patch_size
        inputs = parts.inputs
        images = {}
        for name, prediction in parts.predictions.items():
            if name in self.num_classes:
                prediction = prediction.argmax(dim=-1)
            elif self.hparams.normalize_targets:
                target = patchify(inputs[name], patch).float()
                std = (target.var(-1, keepdim=True) + 1e-6).sqrt()
                prediction = prediction * std + target.mean(-1, keepdim=True)
            images[name] = unpatchify(prediction, patch, parts.grid_size)
        datamodule = getattr(self._trainer, "datamodule", None)  # None outside a Trainer
        display = getattr(datamodule, "display_channels", None)
        return reconstruction_figure(
            inputs,
            images,
            parts.visible,
            parts.present,
            patch,
            self.num_classes,
            display_channels=display,
            num_samples=self.hparams.figure_samples,
            title=f"epoch {self.current_epoch}",
        )

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with lr = base_lr * batch / 256 and a per-step warm-up + cosine schedule."""
        trainer = self.trainer
        batch_size = getattr(trainer.datamodule, "batch_size", None)
        if batch_size is None:
            raise ValueError("PretrainTask needs a DataModule with a batch_size to scale the lr")
        effective_batch = batch_size * trainer.accumulate_grad_batches * trainer.world_size
        optimizer = torch.optim.AdamW(
            weight_decay_groups(self, self.hparams.weight_decay),
            lr=scaled_learning_rate(self.hparams.base_lr, effective_batch),
            betas=tuple(self.hparams.betas),
        )
        steps_per_epoch, total_steps = training_steps(trainer)
        warmup_steps = round(self.hparams.warmup_epochs * steps_per_epoch)
        schedule = WarmupCosineSchedule(min(warmup_steps, total_steps), total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": LambdaLR(optimizer, schedule), "interval": "step"},
        }
