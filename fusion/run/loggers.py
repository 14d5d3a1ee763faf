"""Loggers of the experiment configs.

`WandbLogger` is Lightning's, without two warnings wandb prints that the user did not cause:
"The anonymous setting has no effect and will be removed in a future version" on every run
(Lightning passes ``anonymous=None`` to ``wandb.init`` when the setting is not used, and wandb
warns about the key being there at all: the subclass leaves it out unless it is set), and "git
root runs does not exist" on the first run of a fresh checkout (the save folder is created
before wandb starts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """Lightning's `WandbLogger`: ``anonymous`` passed only when set, the save folder made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        if self._wandb_init.get("dir"):
            Path(self._wandb_init["dir"]).mkdir(parents=True, exist_ok=True)
