"""Supervised segmentation on the fusion backbone with Mask2Former (paper III-F, IV-B-3 to IV-B-5).

Per batch: the modality subset comes from the DataModule (random combinations, uniform over the
non-empty subsets, drawn per batch or per sample, in training); patches without data are hidden
(`fusion.tasks.batches.token_availability`) and, in training, the spatial random mask hides a
share ``patch_dropout`` of each sample's modality tokens (PatchDropout, III-F), split among its
modalities by proportions from a symmetric Dirichlet (IV-B-5; `fusion.pretraining.masking`).
The backbone's fusion maps after four blocks become a feature pyramid
(`fusion.heads.SimpleFeaturePyramid`), and Mask2Former (`fusion.heads.Mask2FormerHead`)
predicts per-query classes and masks, trained with the Hungarian-matched class, binary
cross-entropy and dice losses. Absent modalities and hidden tokens are left out of the packed
token layout, so they cost no compute. Validation and test scores follow
`fusion.tasks.evaluation_hooks`.

Semantic segmentation (``task="semantic"``: binary buildings, land cover) is scored by mIoU,
building instances (``task="instance"``) by COCO AP@50 (segm). Pixels labelled 255 are ignored
by the losses (see `fusion.heads.mask2former`) and the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from torchmetrics.detection import MeanAveragePrecision

from fusion.backbone import MaskedFusionViT
from fusion.backbone.variants import BackboneVariant, variant_options
from fusion.evaluation.coco import COCO_RECALL_THRESHOLDS
from fusion.heads import (
    InstancePrediction,
    Mask2FormerHead,
    MaskPredictions,
    MaskTargets,
    SimpleFeaturePyramid,
    instance_inference,
    instance_targets,
    semantic_inference,
    semantic_targets,
)
from fusion.modality import ModalityConfig, ModalitySpec, parse_modalities
from fusion.pretraining.masking import ModalityShares, sample_patch_dropout
from fusion.run.model_file import load_checkpoint
from fusion.run.optim import StepDecaySchedule, training_steps, weight_decay_groups
from fusion.tasks.batches import split_batch, token_availability
from fusion.tasks.evaluation_hooks import EvaluationHooks

SegmentationKind = Literal["semantic", "instance"]
"""What the head predicts: a class per pixel, or scored instance masks."""

log = logging.getLogger(__name__)


def hides_tokens(visible: Mapping[str, Tensor], present: Mapping[str, Tensor]) -> bool:
    """Whether any token of a present modality is hidden (``visible`` False)."""
    return any(bool((~visible[name] & present[name][:, None]).any()) for name in visible)


def describe_modalities(specs: Sequence[ModalitySpec]) -> str:
    """``name (channels)`` / ``name (categorical, n)`` list, for error messages."""
    return ", ".join(
        f"{spec.name} (categorical, {spec.num_classes})"
        if spec.is_categorical
        else f"{spec.name} ({spec.channels})"
        for spec in specs
    )


class SegmentationTask(EvaluationHooks):
    """Mask2Former segmentation on `fusion.MaskedFusionViT`, trained on random modality subsets.

    Optimizer (IV-B-5): AdamW, lr 1e-4, weight decay 0.05 (none on norms, biases, learned
    tokens, queries and level embeddings), the lr multiplied by ``lr_decay`` at each of
    ``lr_milestones`` (shares of the run's optimizer steps); a backbone initialised from a
    pretraining checkpoint learns at ``backbone_lr_multiplier`` times the lr, one trained from
    scratch at the full lr. Gradient clipping is the Trainer's: ``trainer.gradient_clip_val``
    (and ``gradient_clip_algorithm``) in the config.

    Args:
        modalities: name -> channels or ``("categorical", n)``; set from the DataModule's
            ``modality_specs`` by the command line.
        num_classes: K classes, ids ``0..K-1`` (land cover 7, binary buildings 2, building
            instances 1).
        task: ``"semantic"`` or ``"instance"``.
        num_queries: Mask2Former queries (the paper: 9 land cover, 2 binary buildings, 100
            building instances).
        variant: backbone preset (`fusion.backbone.variants`): ``"proposed"``, ``"multivit"``,
            ``"no_masked_attention"``, ``"no_modality_attention"``.
        img_size: image side the learned fusion tokens are made for.
        patch_size: patch side (the paper: 16).
        embed_dim: backbone width (ViT-T: 192).
        depth: backbone blocks (ViT-T: 12); the pyramid takes the last block of each quarter.
        num_heads: backbone heads (ViT-T: 3).
        drop_path_rate: stochastic depth of the backbone.
        patch_dropout: share of each sample's modality tokens hidden in training (PatchDropout,
            III-F; the spatial random mask of IV-B-5); 0 keeps them all.
        patch_dropout_shares: how the hidden share is split among the sample's modalities:
            ``"dirichlet"`` (proportions from a symmetric Dirichlet, IV-B-5) or ``"equal"``
            (the same share of every modality).
        dirichlet_alpha: concentration of that Dirichlet (the paper: 1, as MultiMAE).
        hidden_dim: width of the pixel decoder and the Transformer decoder (a multiple of 32).
        encoder_layers: deformable-attention layers of the pixel decoder (the paper: 2).
        decoder_layers: masked-attention decoder layers (the paper: 4).
        decoder_heads: attention heads of the pixel decoder and the decoder.
        encoder_feedforward_dim: MLP width of the deformable-attention layers.
        decoder_feedforward_dim: MLP width of the decoder layers.
        train_num_points: points sampled per mask for the mask losses and the matching.
        class_weight: weight of the class loss.
        mask_weight: weight of the binary cross-entropy mask loss.
        dice_weight: weight of the dice mask loss.
        no_object_weight: class-loss weight of the no-object class.
        top_k: instances kept per image in instance inference.
        lr: learning rate of the head (and of a backbone trained from scratch).
        weight_decay: AdamW weight decay.
        lr_milestones: shares of the run after which the lr drops.
        lr_decay: factor of each drop.
        backbone_lr_multiplier: backbone lr factor when ``pretrained`` is given.
        pretrained: path of a `fusion.tasks.PretrainTask` checkpoint whose backbone weights
            initialise this backbone when fitting starts; None trains from scratch.
    """

    def __init__(
        self,
        modalities: dict[str, ModalityConfig],
        num_classes: int,
        task: SegmentationKind = "semantic",
        num_queries: int = 100,
        variant: BackboneVariant = "proposed",
        img_size: int = 256,
        patch_size: int = 16,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        drop_path_rate: float = 0.0,
        patch_dropout: float = 0.0,
        patch_dropout_shares: ModalityShares = "dirichlet",
        dirichlet_alpha: float = 1.0,
        hidden_dim: int = 256,
        encoder_layers: int = 2,
        decoder_layers: int = 4,
        decoder_heads: int = 8,
        encoder_feedforward_dim: int = 1024,
        decoder_feedforward_dim: int = 2048,
        train_num_points: int = 12544,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        top_k: int = 100,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        lr_milestones: tuple[float, ...] = (0.9, 0.95),
        lr_decay: float = 0.1,
        backbone_lr_multiplier: float = 0.1,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        if task not in ("semantic", "instance"):
            raise ValueError(f"task must be 'semantic' or 'instance', got {task!r}")
        if not 0.0 <= patch_dropout < 1.0:
            raise ValueError(f"patch_dropout must be in [0, 1), got {patch_dropout}")
        if patch_dropout_shares not in ("dirichlet", "equal"):
            raise ValueError(
                f"patch_dropout_shares must be 'dirichlet' or 'equal', got {patch_dropout_shares!r}"
            )
        if dirichlet_alpha <= 0:
            raise ValueError(f"dirichlet_alpha must be positive, got {dirichlet_alpha}")
        self.save_hyperparameters()
        self.specs = parse_modalities(modalities)
        self.modality_names = tuple(spec.name for spec in self.specs)
        self.backbone = MaskedFusionViT(
            modalities,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            drop_path_rate=drop_path_rate,
            **variant_options(variant),
        )
        self.pyramid = SimpleFeaturePyramid(embed_dim)
        self.head = Mask2FormerHead(
            embed_dim,
            num_labels=num_classes,
            num_queries=num_queries,
            hidden_dim=hidden_dim,
            encoder_layers=encoder_layers,
            decoder_layers=decoder_layers,
            num_heads=decoder_heads,
            encoder_feedforward_dim=encoder_feedforward_dim,
            decoder_feedforward_dim=decoder_feedforward_dim,
            train_num_points=train_num_points,
            class_weight=class_weight,
            mask_weight=mask_weight,
            dice_weight=dice_weight,
            no_object_weight=no_object_weight,
        )
        self.metrics = nn.ModuleDict({stage: self.make_metrics() for stage in ("val", "test")})

    # -- scores, as ``fusion evaluate`` reads them (semantic: `EvaluationHooks`) -------------
    @property
    def table_metrics(self) -> dict[str, str]:
        """Columns of the subset tables: AP@50 for instances, else `EvaluationHooks`'s."""
        if self.hparams.task == "instance":
            return {"AP@50": "ap50", "excluded tiles": "excluded_tiles"}
        return super().table_metrics

    @property
    def score_names(self) -> tuple[str, ...]:
        """Scores logged per stage: ``ap50`` and ``ap`` for instances, else `EvaluationHooks`'s."""
        if self.hparams.task == "instance":
            return ("ap50", "ap")
        return super().score_names

    def make_metrics(self) -> nn.ModuleDict:
        """The metrics of one stage: mIoU and per-class IoU, or COCO mask AP for instances."""
        if self.hparams.task == "semantic":
            return super().make_metrics()
        # pycocotools' recall points in double precision, so that AP matches COCOeval's
        ap = MeanAveragePrecision(iou_type="segm", rec_thresholds=COCO_RECALL_THRESHOLDS)
        return nn.ModuleDict({"ap": ap})

    def trivial_scores(
        self, batches: Iterable[Mapping[str, Any]], majority: int | None = None
    ) -> dict[str, float]:
        """Scores of the empty modality subset: no instance at all (``ap50`` and ``ap`` 0).

        Semantic tasks: the majority class everywhere (`EvaluationHooks.trivial_scores`).
        """
        if self.hparams.task == "instance":
            return {"ap50": 0.0, "ap": 0.0}
        return super().trivial_scores(batches, majority)

    # -- the model ----------------------------------------------------------------------------
    def forward(
        self,
        inputs: Mapping[str, Tensor],
        present: Mapping[str, Tensor] | None = None,
        visible: Mapping[str, Tensor] | None = None,
        pack: bool | None = None,
    ) -> MaskPredictions:
        """Backbone, pyramid and Mask2Former.

        Args:
            inputs: name -> ``[B, C, H, W]`` (class ids ``[B, 1, H, W]`` for categorical maps);
                modalities left out are absent.
            present: optional name -> ``bool [B]``.
            visible: optional name -> ``bool [B, L]`` tokens shown (PatchDropout).
            pack: pack the shown tokens per sample (see `fusion.MaskedFusionViT.forward`).

        Returns:
            Class logits ``[B, Q, K + 1]`` and mask logits ``[B, Q, H/4, W/4]`` (patch 16) of
            every decoder stage.
        """
        maps = self.backbone.forward_intermediates(inputs, present, visible, pack)
        return self.head(self.pyramid(maps))

    def targets(self, batch: Mapping[str, Any]) -> list[MaskTargets]:
        """The batch's segments: one mask per class present, or the building instances."""
        if self.hparams.task == "semantic":
            return semantic_targets(batch["mask"], self.hparams.num_classes)
        return instance_targets(
            batch["instance_masks"], batch["labels"], self.hparams.num_classes, batch.get("mask")
        )

    def encode_batch(self, batch: Mapping[str, Any], train: bool) -> MaskPredictions:
        """Predict a batch of the sample contract.

        Patches without data are hidden, and in training the spatial random mask
        (`fusion.pretraining.masking.sample_patch_dropout`) hides more; absent modalities and
        hidden tokens are left out of the token layout (packed), so they cost nothing. A batch
        that hides nothing runs on the plain grid.
        """
        inputs, present = split_batch(batch, self.modality_names)
        patch = self.hparams.patch_size
        visible = token_availability(batch, self.modality_names, list(inputs), patch)
        if train and self.hparams.patch_dropout > 0:
            height, width = next(iter(inputs.values())).shape[-2:]
            names = list(inputs)
            kept = sample_patch_dropout(
                torch.stack([present[name] for name in names], dim=1),
                (height // patch) * (width // patch),
                self.hparams.patch_dropout,
                self.hparams.patch_dropout_shares,
                self.hparams.dirichlet_alpha,
                None if visible is None else torch.stack([visible[n] for n in names], dim=1),
            )
            visible = {name: kept[:, i] for i, name in enumerate(names)}
        if visible is not None and not hides_tokens(visible, present):
            visible = None
        absent = not all(bool(flags.all()) for flags in present.values())
        return self(inputs, present, visible, pack=visible is not None or absent)

    def shared_step(self, batch: Mapping[str, Any], stage: str) -> tuple[Tensor, MaskPredictions]:
        """Predict and score one batch; log the loss and its parts."""
        predictions = self.encode_batch(batch, train=stage == "train")
        losses = self.head.loss(predictions, self.targets(batch))
        batch_size = len(batch["present"])
        train = stage == "train"  # evaluation means are averaged over all processes (DDP)
        logger = partial(
            self.log, batch_size=batch_size, on_step=train, on_epoch=True, sync_dist=not train
        )
        logger(f"{stage}/loss", losses["loss"], prog_bar=True)
        for name in ("class", "mask", "dice"):
            logger(f"{stage}/loss_{name}", losses[name])
        if "subset_fallback" in batch:  # tiles without the batch's drawn modalities
            logger(f"{stage}/subset_fallback", batch["subset_fallback"].float().mean())
        return losses["loss"], predictions

    # -- inference ----------------------------------------------------------------------------
    def semantic_prediction(self, predictions: MaskPredictions, size: tuple[int, int]) -> Tensor:
        """Class map ``int64 [B, H, W]`` at ``size``."""
        return semantic_inference(
            predictions.final_class_logits, predictions.final_mask_logits, size
        )

    def instance_prediction(
        self, predictions: MaskPredictions, size: tuple[int, int]
    ) -> list[InstancePrediction]:
        """The ``top_k`` scored instance masks of each image, at ``size``."""
        return instance_inference(
            predictions.final_class_logits,
            predictions.final_mask_logits,
            size,
            self.hparams.top_k,
        )

    def update_metrics(
        self, stage: str, predictions: MaskPredictions, batch: Mapping[str, Any]
    ) -> None:
        """Add a batch to the stage's metrics, at the label resolution."""
        size = tuple(batch["mask"].shape[-2:])
        metrics = self.metrics[stage]
        if self.hparams.task == "semantic":
            classes = self.semantic_prediction(predictions, size)
            metrics["miou"].update(classes, batch["mask"])
            metrics["iou"].update(classes, batch["mask"])
            return
        instances = self.instance_prediction(predictions, size)
        truth = [
            {"masks": masks.bool(), "labels": labels}
            for masks, labels in zip(batch["instance_masks"], batch["labels"], strict=True)
        ]
        metrics["ap"].update([instance.as_metric_input() for instance in instances], truth)

    def log_metrics(self, stage: str) -> None:
        """Log and reset the stage's metrics: ``miou`` and ``iou_<k>``, or ``ap50`` and ``ap``."""
        if self.hparams.task == "semantic":
            super().log_metrics(stage)
            return
        metrics = self.metrics[stage]
        scores = metrics["ap"].compute()
        self.log(f"{stage}/ap50", scores["map_50"], prog_bar=True)
        self.log(f"{stage}/ap", scores["map"])
        metrics["ap"].reset()

    # -- Lightning hooks ----------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimization step's loss."""
        loss, _ = self.shared_step(batch, "train")
        return loss

    def score_batch(self, batch: dict[str, Any], stage: str) -> None:
        """Loss and metrics of a validation or test batch."""
        _, predictions = self.shared_step(batch, stage)
        self.update_metrics(stage, predictions, batch)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Predictions at the input resolution.

        Returns:
            ``name`` (tile names) and ``semantic`` (``int64 [B, H, W]``) or ``instances``
            (a list of `fusion.heads.InstancePrediction`).
        """
        size = tuple(batch[self.modality_names[0]].shape[-2:])
        predictions = self.encode_batch(batch, train=False)
        if self.hparams.task == "semantic":
            semantic = self.semantic_prediction(predictions, size)
            return {"name": batch.get("name"), "semantic": semantic}
        instances = self.instance_prediction(predictions, size)
        return {"name": batch.get("name"), "instances": instances}

    # -- initialisation from pretraining ------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Load the pretrained backbone when fitting starts.

        A resumed run's checkpoint is restored after this hook and overrides it.
        """
        if stage == "fit" and self.hparams.pretrained:
            self.load_pretrained_backbone(self.hparams.pretrained)

    def load_pretrained_backbone(self, path: str | Path) -> tuple[list[str], list[str]]:
        """Copy the backbone weights of a `fusion.tasks.PretrainTask` checkpoint or export.

        Only keys under ``backbone.`` are read (the pretraining decoders are dropped). Keys
        missing from the checkpoint or unexpected by this backbone are logged as a warning.

        Args:
            path: the checkpoint file.

        Returns:
            ``(missing, unexpected)`` backbone keys.

        Raises:
            ValueError: if the checkpoint's modalities differ from this model's (the
                DataModule's), or it holds no backbone weights.
        """
        checkpoint = load_checkpoint(path)  # never unpickled (fusion.run.model_file)
        theirs = checkpoint.get("hyper_parameters", {}).get("modalities")
        if theirs is None:
            raise ValueError(
                f"{path} has no 'modalities' hyper-parameter: not a PretrainTask checkpoint"
            )
        their_specs = parse_modalities(theirs)
        if their_specs != self.specs:
            raise ValueError(
                f"the pretrained checkpoint {path} was trained on the modalities "
                f"[{describe_modalities(their_specs)}] but the data has "
                f"[{describe_modalities(self.specs)}]"
            )
        prefix = "backbone."
        state = {
            key.removeprefix(prefix): value
            for key, value in checkpoint["state_dict"].items()
            if key.startswith(prefix)
        }
        if not state:
            raise ValueError(f"{path} holds no '{prefix}*' weights")
        result = self.backbone.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            log.warning(
                "Pretrained backbone %s: %d tensors loaded; missing (left as initialised): %s; "
                "unexpected (ignored): %s",
                path,
                len(state) - len(result.unexpected_keys),
                result.missing_keys or "none",
                result.unexpected_keys or "none",
            )
        else:
            log.info("Pretrained backbone %s: all %d tensors loaded", path, len(state))
        return list(result.missing_keys), list(result.unexpected_keys)

    # -- optimization -------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """AdamW groups: backbone, pyramid and head, each with and without weight decay.

        The backbone's lr is ``lr * backbone_lr_multiplier`` when initialised from a
        pretraining checkpoint, ``lr`` otherwise.
        """
        lr = self.hparams.lr
        backbone_lr = lr * (self.hparams.backbone_lr_multiplier if self.hparams.pretrained else 1.0)
        groups = []
        for module, module_lr in (
            (self.backbone, backbone_lr),
            (self.pyramid, lr),
            (self.head, lr),
        ):
            for group in weight_decay_groups(module, self.hparams.weight_decay):
                if group["params"]:
                    groups.append({**group, "lr": module_lr})
        return groups

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW with the step schedule of IV-B-5, stepped per optimizer step."""
        optimizer = torch.optim.AdamW(self.parameter_groups(), lr=self.hparams.lr)
        _, total_steps = training_steps(self.trainer)
        schedule = StepDecaySchedule(
            total_steps, tuple(self.hparams.lr_milestones), self.hparams.lr_decay
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": LambdaLR(optimizer, schedule), "interval": "step"},
        }
