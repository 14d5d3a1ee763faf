"""The kinds of place a synthetic DFC2023 tile can show, and their roof colours."""

from __future__ import annotations

from dataclasses import dataclass

ROOF_COLOURS: dict[str, tuple[int, int, int]] = {
    "red_tile": (168, 80, 62),
    "dark_red": (128, 62, 52),
    "brown": (122, 94, 76),
    "grey": (130, 130, 132),
    "light_grey": (178, 178, 174),
    "white": (218, 218, 212),
    "dark": (66, 68, 74),
    "blue_metal": (118, 140, 162),
}
"""Roof colours (RGB)."""


@dataclass(frozen=True)
class PlaceKind:
    """What one kind of place looks like.

    Attributes:
        name: kind name.
        probability: share of the tiles of this kind.
        street_spacing_px: range of the distance between parallel streets (None: one road).
        buildings_per_tile: range of the number of buildings attempted on a 512 x 512 tile.
        length_px: range of the building length (long side), pixels.
        width_px: range of the building width, as a fraction of its length.
        height_m: range of the eave (or flat roof) height, metres.
        gabled_share: share of gabled roofs among rectangular buildings.
        l_shape_share: share of L-shaped footprints.
        setback_px: range of the gap between a street edge and a building front.
        along_streets: whether buildings line the streets (False: anywhere in the block).
        trees_per_tile: range of the number of trees on a 512 x 512 tile.
        ground_shares: shares of grass, bare soil and paving between the buildings.
        roofs: roof colour names to draw from.
    """

    name: str
    probability: float
    street_spacing_px: tuple[float, float] | None
    buildings_per_tile: tuple[int, int]
    length_px: tuple[float, float]
    width_px: tuple[float, float]
    height_m: tuple[float, float]
    gabled_share: float
    l_shape_share: float
    setback_px: tuple[float, float]
    along_streets: bool
    trees_per_tile: tuple[int, int]
    ground_shares: tuple[float, float, float]
    roofs: tuple[str, ...]


PLACE_KINDS: tuple[PlaceKind, ...] = (
    PlaceKind(
        name="rural",
        probability=0.15,
        street_spacing_px=None,
        buildings_per_tile=(0, 3),
        length_px=(16, 44),
        width_px=(0.5, 0.8),
        height_m=(3, 8),
        gabled_share=0.6,
        l_shape_share=0.1,
        setback_px=(10, 30),
        along_streets=False,
        trees_per_tile=(60, 160),
        ground_shares=(0.6, 0.4, 0.0),
        roofs=("red_tile", "brown", "grey", "blue_metal"),
    ),
    PlaceKind(
        name="suburban",
        probability=0.35,
        street_spacing_px=(150, 220),
        buildings_per_tile=(45, 80),
        length_px=(16, 34),
        width_px=(0.55, 0.85),
        height_m=(3, 8),
        gabled_share=0.75,
        l_shape_share=0.2,
        setback_px=(6, 14),
        along_streets=True,
        trees_per_tile=(50, 110),
        ground_shares=(0.75, 0.1, 0.15),
        roofs=("red_tile", "dark_red", "brown", "grey", "dark"),
    ),
    PlaceKind(
        name="urban",
        probability=0.25,
        street_spacing_px=(120, 180),
        buildings_per_tile=(40, 70),
        length_px=(22, 52),
        width_px=(0.5, 0.9),
        height_m=(8, 22),
        gabled_share=0.2,
        l_shape_share=0.3,
        setback_px=(2, 6),
        along_streets=True,
        trees_per_tile=(15, 40),
        ground_shares=(0.3, 0.15, 0.55),
        roofs=("grey", "light_grey", "dark", "red_tile", "white"),
    ),
    PlaceKind(
        name="dense",
        probability=0.15,
        street_spacing_px=(130, 190),
        buildings_per_tile=(20, 40),
        length_px=(30, 60),
        width_px=(0.55, 1.0),
        height_m=(15, 40),
        gabled_share=0.0,
        l_shape_share=0.35,
        setback_px=(2, 5),
        along_streets=True,
        trees_per_tile=(6, 18),
        ground_shares=(0.2, 0.05, 0.75),
        roofs=("light_grey", "grey", "white", "dark"),
    ),
    PlaceKind(
        name="industrial",
        probability=0.1,
        street_spacing_px=(190, 280),
        buildings_per_tile=(10, 22),
        length_px=(36, 60),
        width_px=(0.5, 1.0),
        height_m=(5, 15),
        gabled_share=0.0,
        l_shape_share=0.25,
        setback_px=(8, 18),
        along_streets=False,
        trees_per_tile=(3, 12),
        ground_shares=(0.15, 0.35, 0.5),
        roofs=("white", "light_grey", "blue_metal", "grey"),
    ),
)
"""The kinds of place a tile can show."""
