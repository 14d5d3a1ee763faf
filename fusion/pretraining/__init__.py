"""The pieces of self-supervised pretraining (paper III-D, III-E), wired by a LightningModule.

* `fusion.pretraining.masking`: which modality tokens the encoder sees (MultiMAE's Dirichlet
  masking; also the spatial random mask, PatchDropout, of supervised training);
* `fusion.pretraining.decoders`: the shallow per-modality decoders that reconstruct patches;
* `fusion.pretraining.losses`: masked-patch reconstruction (eq. 4) and fusion contrast (eq. 5);
* `fusion.pretraining.visualization`: figures of masked reconstructions.

`fusion.tasks.PretrainTask` puts them together.
"""
