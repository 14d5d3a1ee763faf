"""Whole-scene prediction: any subset of co-registered modality rasters in, georeferenced maps out.

``fusion predict-scene`` (`fusion.scene.command`) tiles a scene with overlap, predicts each
tile from the modalities that hold data there, blends the tiles without seams and writes
Cloud-Optimized GeoTIFFs on a reference grid, streaming tiles so memory does not grow with the
scene. See `fusion.scene.predict` for the steps.
"""

from fusion.scene.pipeline import SceneModel, load_scene_model
from fusion.scene.predict import SceneResult, predict_scene

__all__ = ["SceneModel", "SceneResult", "load_scene_model", "predict_scene"]
