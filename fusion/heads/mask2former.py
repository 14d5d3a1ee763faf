"""Mask2Former from Hugging Face transformers' pieces: the one file that touches the library.

The pieces are the library's: the pixel decoder with multi-scale deformable attention (its
pure-PyTorch path), the masked-attention Transformer decoder, the Hungarian matcher, the point
sampling of the mask losses, and the class loss with its no-object weight. Ours are the class head
(a linear layer on every decoder state, which the library keeps in its full model), the weighting
of the loss terms (the library applies ``weight_dict`` only in its full model), the mask losses'
handling of ignored pixels, and the initialisation, which the library runs only inside its own
``PreTrainedModel`` classes.

Paper IV-B-4: two MSDeformAttn layers in the pixel decoder (``encoder_layers=2``; the library's
default is six), a Transformer decoder of four layers (the library builds ``decoder_layers - 1``
layers, so its config gets ``decoder_layers + 1``), binary cross-entropy + dice mask losses and a
class loss. Dropout is 0: the library also uses it as the decoder's layer-drop probability.

Ignored pixels (label 255): the mask losses sample points as the library does and read the
targets there by bilinear interpolation; a point counts only if none of the (up to four) target
pixels it interpolates is ignored, so ignored labels never reach a loss (points within one pixel
of an ignored area are dropped as well). The binary cross-entropy is averaged over the counted
points of each mask, the dice sums run over them only. With nothing ignored this is exactly the
library's loss. The library's matcher scores candidate pairs on uniformly sampled points and
sees ignored pixels as background of every mask: that shifts the matching cost, not the losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import Mask2FormerConfig
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerLoss,
    Mask2FormerPixelDecoder,
    Mask2FormerPreTrainedModel,
    Mask2FormerTransformerModule,
    dice_loss,
    sample_point,
)

from fusion.heads.targets import MaskTargets

LOSS_TERMS = ("class", "mask", "dice")
"""Names of the loss terms: class cross-entropy, mask binary cross-entropy, mask dice."""


@dataclass
class MaskPredictions:
    """Per-query class and mask logits of every decoder stage.

    Attributes:
        class_logits: one ``[B, Q, K + 1]`` per stage (the queries before the first decoder
            layer and after each layer); the last class is "no object".
        mask_logits: one ``[B, Q, h, w]`` per stage, at the mask features' resolution (stride 4
            of the pyramid: a quarter of the image side for patch 16).
    """

    class_logits: list[Tensor]
    mask_logits: list[Tensor]

    @property
    def final_class_logits(self) -> Tensor:
        """Class logits ``[B, Q, K + 1]`` of the last decoder layer."""
        return self.class_logits[-1]

    @property
    def final_mask_logits(self) -> Tensor:
        """Mask logits ``[B, Q, h, w]`` of the last decoder layer."""
        return self.mask_logits[-1]


class Mask2FormerHead(nn.Module):
    """Pixel decoder, masked-attention decoder, class head and losses of Mask2Former.

    Args:
        in_channels: channels of the four pyramid levels.
        num_labels: K classes (ids ``0..K-1``; the head adds the no-object class K).
        num_queries: learned queries (the paper: 100 building instances, 2 binary building
            semantics, 9 land cover).
        hidden_dim: width of the pixel decoder, the mask features and the decoder (a multiple
            of 32: the library's GroupNorm has 32 groups).
        encoder_layers: deformable-attention layers of the pixel decoder (the paper: 2).
        decoder_layers: masked-attention decoder layers (the paper: 4).
        num_heads: attention heads of both (must divide ``hidden_dim``).
        encoder_feedforward_dim: MLP width of the deformable layers.
        decoder_feedforward_dim: MLP width of the decoder layers.
        train_num_points: points sampled per mask for the mask losses and the matching.
        oversample_ratio: candidates per point of the uncertainty-based point sampling.
        importance_sample_ratio: share of the points taken where the prediction is most uncertain.
        class_weight: weight of the class loss (and of the class cost in the matching).
        mask_weight: weight of the binary cross-entropy (and of its matching cost).
        dice_weight: weight of the dice loss (and of its matching cost).
        no_object_weight: class-loss weight of the no-object class.
        auxiliary_loss: also supervise every earlier decoder stage.
    """

    def __init__(
        self,
        in_channels: int,
        num_labels: int,
        num_queries: int = 100,
        hidden_dim: int = 256,
        encoder_layers: int = 2,
        decoder_layers: int = 4,
        num_heads: int = 8,
        encoder_feedforward_dim: int = 1024,
        decoder_feedforward_dim: int = 2048,
        train_num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        auxiliary_loss: bool = True,
    ) -> None:
        super().__init__()
        if hidden_dim % 32:
            raise ValueError(f"hidden_dim must be a multiple of 32 (GroupNorm), got {hidden_dim}")
        if hidden_dim % num_heads:
            raise ValueError(f"num_heads {num_heads} does not divide hidden_dim {hidden_dim}")
        if num_labels < 1 or num_queries < 1 or decoder_layers < 1 or encoder_layers < 1:
            raise ValueError("num_labels, num_queries and the layer counts must be positive")
        self.config = Mask2FormerConfig(
            feature_size=hidden_dim,
            mask_feature_size=hidden_dim,
            hidden_dim=hidden_dim,
            encoder_layers=encoder_layers,
            decoder_layers=decoder_layers + 1,  # the library builds decoder_layers - 1 layers
            num_attention_heads=num_heads,
            encoder_feedforward_dim=encoder_feedforward_dim,
            dim_feedforward=decoder_feedforward_dim,
            dropout=0.0,  # also the decoder's layer-drop probability
            num_queries=num_queries,
            num_labels=num_labels,
            train_num_points=train_num_points,
            oversample_ratio=oversample_ratio,
            importance_sample_ratio=importance_sample_ratio,
            class_weight=class_weight,
            mask_weight=mask_weight,
            dice_weight=dice_weight,
            no_object_weight=no_object_weight,
            use_auxiliary_loss=auxiliary_loss,
        )
        self.num_labels = num_labels
        self.num_queries = num_queries
        self.weights = {"class": class_weight, "mask": mask_weight, "dice": dice_weight}
        self.auxiliary_loss = auxiliary_loss
        self.pixel_decoder = Mask2FormerPixelDecoder(
            self.config, feature_channels=[in_channels] * 4
        )
        self.transformer = Mask2FormerTransformerModule(hidden_dim, self.config)
        self.class_head = nn.Linear(hidden_dim, num_labels + 1)
        # Matcher, class loss (no-object weight) and point sampling; holds no parameters.
        self.criterion = Mask2FormerLoss(self.config, weight_dict=dict(self.weights))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise every submodule as transformers' Mask2Former models do.

        The library runs ``Mask2FormerPreTrainedModel._init_weights`` only on models of its
        own package (``post_init`` treats subclasses defined elsewhere as custom code). Without
        it the pixel decoder's ``level_embed`` stays uninitialised memory and the deformable
        attention loses its grid-shaped initial sampling offsets. So the library's function is
        applied to each submodule here, children before parents, as the library orders it.
        """
        initializer = Mask2FormerPreTrainedModel(self.config)
        with torch.no_grad():
            for module in reversed(list(self.modules())):  # descendants before ancestors
                if module is not self:
                    initializer._init_weights(module)

    def no_weight_decay(self) -> set[str]:
        """Learned queries and level embeddings: no weight decay, as in Mask2Former."""
        return {
            "pixel_decoder.level_embed",
            "transformer.queries_embedder.weight",
            "transformer.queries_features.weight",
            "transformer.level_embed.weight",
        }

    def forward(self, features: Sequence[Tensor]) -> MaskPredictions:
        """Queries' class and mask logits from a feature pyramid.

        Args:
            features: four ``[B, C, h_i, w_i]`` maps, from high to low resolution (strides 4,
                8, 16 and 32 of the image for patch 16).

        Returns:
            Class logits ``[B, Q, K + 1]`` and mask logits ``[B, Q, h_0, w_0]`` (the
            resolution of the first level) of every decoder stage.
        """
        pixels = self.pixel_decoder(list(features))
        decoded = self.transformer(pixels.multi_scale_features, pixels.mask_features)
        class_logits = [
            self.class_head(state.transpose(0, 1))  # [Q, B, D] -> [B, Q, K + 1]
            for state in decoded.intermediate_hidden_states
        ]
        return MaskPredictions(class_logits, list(decoded.masks_queries_logits))

    # -- losses -------------------------------------------------------------------------------
    def match(
        self, class_logits: Tensor, mask_logits: Tensor, targets: Sequence[MaskTargets]
    ) -> list[tuple[Tensor, Tensor]]:
        """The library's Hungarian matching of queries to target segments.

        Args:
            class_logits: ``[B, Q, K + 1]``.
            mask_logits: ``[B, Q, h, w]``.
            targets: B targets.

        Returns:
            Per image ``(query_indices, target_indices)``, ``int64 [min(Q, N)]`` each.
        """
        return self.criterion.matcher(
            mask_logits.float(),
            class_logits.float(),
            [target.masks for target in targets],
            [target.labels for target in targets],
        )

    def mask_losses(
        self,
        mask_logits: Tensor,
        targets: Sequence[MaskTargets],
        indices: Sequence[tuple[Tensor, Tensor]],
        num_masks: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Point-sampled binary cross-entropy and dice of the matched masks, ignored pixels out.

        Points are drawn with the library's uncertainty-based sampling; a point whose bilinear
        footprint in the target holds an ignored pixel counts in neither term.

        Args:
            mask_logits: ``[B, Q, h, w]``.
            targets: B targets.
            indices: the matching, per image ``(query_indices, target_indices)``.
            num_masks: the normaliser, scalar: the number of target masks (`mask_count`).

        Returns:
            ``(bce, dice)``, each summed over matched masks and divided by ``num_masks``.
        """
        predicted = torch.cat([mask_logits[i, queries] for i, (queries, _) in enumerate(indices)])
        if predicted.numel() == 0:  # nothing to match in the whole batch
            zero = mask_logits.sum() * 0.0
            return zero, zero
        target_masks = torch.cat(
            [target.masks[rows] for target, (_, rows) in zip(targets, indices, strict=True)]
        )
        target_valid = torch.cat(
            [
                target.valid[None].expand(len(rows), -1, -1)
                for target, (_, rows) in zip(targets, indices, strict=True)
            ]
        )
        predicted = predicted[:, None]  # [R, 1, h, w]
        with torch.no_grad():
            points = self.criterion.sample_points_using_uncertainty(
                predicted,
                self.criterion.calculate_uncertainty,
                self.criterion.num_points,
                self.criterion.oversample_ratio,
                self.criterion.importance_sample_ratio,
            )  # [R, P, 2] in [0, 1]
            labels = sample_point(target_masks[:, None].float(), points, align_corners=False)
            footprint_valid = sample_point(  # 1 where all interpolated pixels are valid
                target_valid[:, None].float(), points, align_corners=False, padding_mode="border"
            )
            labels, valid = labels[:, 0], footprint_valid[:, 0] > 1 - 1e-5  # [R, P]
        logits = sample_point(predicted, points, align_corners=False)[:, 0]  # [R, P]
        bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        bce = (bce * valid).sum(1) / valid.sum(1).clamp_min(1)
        bce = bce.sum() / num_masks
        dice = dice_loss(logits.masked_fill(~valid, float("-inf")), labels * valid, num_masks)
        return bce, dice

    def mask_count(self, count: int, device: torch.device) -> Tensor:
        """The mask losses' normaliser: the mean number of target masks per process, at least 1.

        Args:
            count: number of target masks in this process's batch.
            device: device of the returned tensor (and of the ``all_reduce``).

        Returns:
            Scalar float32: ``max(count, 1)`` alone, or in training under an initialised
            ``torch.distributed`` group of more than one process, ``max(sum of the processes'
            counts / world size, 1)``.
        """
        num_masks = torch.tensor(float(count), device=device)
        if self.training and dist.is_available() and dist.is_initialized():
            world_size = dist.get_world_size()
            if world_size > 1:
                dist.all_reduce(num_masks)  # sum over the processes
                num_masks = num_masks / world_size
        return num_masks.clamp_min(1.0)

    def loss_terms(
        self, predictions: MaskPredictions, targets: Sequence[MaskTargets]
    ) -> list[dict[str, Tensor]]:
        """Unweighted class, mask and dice losses of each supervised decoder stage.

        Each stage is matched on its own, as in Mask2Former. Computed in float32.

        The mask and dice terms are sums over the matched masks divided by ``num_masks``, the
        number of target masks (at least 1). In training under ``torch.distributed`` (initialised,
        world size above 1) it is, as in Mask2Former, the mean count over the processes: the
        local counts are summed with ``all_reduce`` and divided by the world size. DDP averages
        the processes' gradients, so the mean of the processes' mask terms is then the sum over
        all their masks divided by the total count: the term of one process holding the whole
        global batch. Every process must call this in step with the others then, which training
        steps do. Outside training (``self.training`` False) and without distributed the count
        is the local one: evaluation processes may run different numbers of batches.

        Args:
            predictions: the head's output.
            targets: B targets.

        Returns:
            One ``{"class", "mask", "dice"}`` dict per stage: the last stage first, then the
            earlier ones in decoder order (only the last without ``auxiliary_loss``).
        """
        stages = list(zip(predictions.class_logits, predictions.mask_logits, strict=True))
        stages = [stages[-1], *stages[:-1]] if self.auxiliary_loss else [stages[-1]]
        count = sum(len(target.labels) for target in targets)
        num_masks = self.mask_count(count, predictions.final_mask_logits.device)
        class_labels = [target.labels for target in targets]
        terms = []
        with torch.autocast(predictions.final_mask_logits.device.type, enabled=False):
            for class_logits, mask_logits in stages:
                class_logits, mask_logits = class_logits.float(), mask_logits.float()
                indices = self.match(class_logits, mask_logits, targets)
                bce, dice = self.mask_losses(mask_logits, targets, indices, num_masks)
                labels = self.criterion.loss_labels(class_logits, class_labels, indices)
                terms.append({"class": labels["loss_cross_entropy"], "mask": bce, "dice": dice})
        return terms

    def loss(
        self, predictions: MaskPredictions, targets: Sequence[MaskTargets]
    ) -> dict[str, Tensor]:
        """The weighted Mask2Former objective.

        Args:
            predictions: the head's output.
            targets: B targets.

        Returns:
            ``loss`` (the total to minimise) and its weighted parts ``class``, ``mask`` and
            ``dice``, each summed over the supervised stages.
        """
        terms = self.loss_terms(predictions, targets)
        parts = {
            name: self.weights[name] * torch.stack([stage[name] for stage in terms]).sum()
            for name in LOSS_TERMS
        }
        return {"loss": sum(parts.values()), **parts}
