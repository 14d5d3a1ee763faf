"""The reference map of a synthetic region, as UrbanAtlas 2018 codes.

Layers are laid down in order, each over the previous ones:

1. rural land: agricultural parcels (arable, pastures, permanent crops, complex patterns), then
   forest on higher and steeper ground, then natural grass, moor and rock on the highest ground,
   beaches along the coast;
2. towns: street blocks whose density follows the distance to the town centre (continuous urban
   fabric in the core, lower densities outwards), with clustered industrial estates, parks,
   sports grounds, construction sites and a port on the coast;
3. villages, isolated farm buildings, an airport or a quarry here and there;
4. roads and a railway between the towns;
5. water from the terrain, and wetlands next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from datamodules.synthetic.noise import blob_noise, fractal_noise
from datamodules.synthetic.quadruplets.parcels import ParcelGrid, parcel_grid
from datamodules.synthetic.quadruplets.regions import RegionStyle
from datamodules.synthetic.quadruplets.terrain import Terrain

REFERENCE_AREA_PX = 1024 * 1536
"""Canvas area (10 x 15 km) that `RegionStyle.towns` refers to."""

_URBAN_THRESHOLD = 0.2
_DENSITY_CODES = ((0.85, 11100), (0.6, 11210), (0.42, 11220), (0.28, 11230), (0.0, 11240))


@dataclass(frozen=True)
class Town:
    """A settlement: centre ``(x, y)`` and radius of its built-up area, in pixels."""

    x: float
    y: float
    radius: float


@dataclass(frozen=True)
class LandCoverMap:
    """The reference map of a region canvas and what the sensors need to know about it.

    Attributes:
        codes: ``uint16 [H, W]`` UrbanAtlas 2018 codes.
        parcel_id: ``int32 [H, W]`` id of the field or street block a pixel belongs to, in
            ``0..parcel_count-1``; sensors draw per-parcel properties with it.
        greenness: ``float32 [parcel_count]`` vegetation vigour of each parcel, 0 (bare soil)
            to 1 (dense green canopy).
        moisture: ``float32 [parcel_count]`` soil moisture and roughness of each parcel, 0..1.
    """

    codes: np.ndarray
    parcel_id: np.ndarray
    greenness: np.ndarray
    moisture: np.ndarray

    @property
    def parcel_count(self) -> int:
        """Number of parcel ids."""
        return len(self.greenness)


def make_land_cover_map(
    rng: np.random.Generator, terrain: Terrain, style: RegionStyle
) -> LandCoverMap:
    """Lay out the land cover of one region canvas.

    Args:
        rng: random source of this region's land cover.
        terrain: the canvas's terrain and water.
        style: the region's character.

    Returns:
        The map, with the parcel structure the sensors use.
    """
    shape = terrain.elevation_m.shape
    fields = parcel_grid(rng, shape, style.field_px, style.field_angle_deg)
    blocks = parcel_grid(
        rng, shape, style.block_px, style.field_angle_deg + rng.uniform(-15, 15), (0.9, 1.8)
    )
    towns = _place_towns(rng, terrain, style)
    urbanness = _urbanness(rng, terrain, towns)

    codes = _rural_codes(rng, terrain, fields, style)
    block_codes = _block_codes(rng, blocks, urbanness, terrain, style)
    urban = block_codes[blocks.ids] > 0
    codes = np.where(urban, block_codes[blocks.ids], codes)
    codes[urban & blocks.boundaries()] = 12220
    _add_scattered_sites(rng, codes, terrain, towns)
    _draw_transport(rng, codes, terrain, towns)
    _add_water_and_wetlands(rng, codes, terrain)

    parcel_id = np.where(urban, fields.count + blocks.ids, fields.ids).astype(np.int32)
    greenness, moisture = _parcel_states(rng, fields.count + blocks.count, style)
    return LandCoverMap(codes.astype(np.uint16), parcel_id, greenness, moisture)


def _place_towns(rng: np.random.Generator, terrain: Terrain, style: RegionStyle) -> list[Town]:
    """Towns on low, flat, dry land, far enough apart; the first is the largest."""
    height, width = terrain.elevation_m.shape
    scale = height * width / REFERENCE_AREA_PX
    count = max(1, round(style.towns * scale))
    ys = rng.uniform(0.15, 0.85, 400) * height
    xs = rng.uniform(0.15, 0.85, 400) * width
    rows, cols = ys.astype(int), xs.astype(int)
    score = (
        -3 * terrain.relative_height[rows, cols]
        - terrain.slope_deg[rows, cols] / 6
        - 4 * (terrain.distance_to_water_px[rows, cols] < 6)
        + rng.normal(0, 0.3, len(ys))
    )
    towns: list[Town] = []
    for index in np.argsort(-score):
        radius = style.town_radius_px * (
            rng.uniform(0.85, 1.1) if not towns else rng.uniform(0.3, 0.6)
        )
        if all(
            np.hypot(xs[index] - t.x, ys[index] - t.y) > 1.2 * (radius + t.radius) for t in towns
        ):
            towns.append(Town(float(xs[index]), float(ys[index]), float(radius)))
        if len(towns) == count:
            break
    villages = [
        Town(float(x), float(y), float(r))
        for x, y, r in zip(
            rng.uniform(0, width, round(8 * scale) + 1),
            rng.uniform(0, height, round(8 * scale) + 1),
            rng.uniform(8, 16, round(8 * scale) + 1),
            strict=True,
        )
    ]
    return towns + villages


def _urbanness(rng: np.random.Generator, terrain: Terrain, towns: list[Town]) -> np.ndarray:
    """``float32 [H, W]`` built-up density, 1 in town cores falling to about 0.2 at the edge."""
    shape = terrain.elevation_m.shape
    irregularity = 1 + 0.25 * blob_noise(rng, shape, sigma_px=40)
    density = np.zeros(shape, dtype=np.float32)
    for town in towns:
        reach = 2 * town.radius
        top, bottom = max(int(town.y - reach), 0), min(int(town.y + reach) + 1, shape[0])
        left, right = max(int(town.x - reach), 0), min(int(town.x + reach) + 1, shape[1])
        if top >= bottom or left >= right:
            continue
        rows = np.arange(top, bottom, dtype=np.float32)[:, None]
        cols = np.arange(left, right, dtype=np.float32)[None, :]
        distance = np.hypot(rows - town.y, cols - town.x) * irregularity[top:bottom, left:right]
        window = density[top:bottom, left:right]
        np.maximum(window, np.exp(-1.6 * (distance / town.radius) ** 2), out=window)
    density *= np.clip(1.3 - terrain.slope_deg / 12, 0, 1)
    density[terrain.water] = 0
    return density


def _rural_codes(
    rng: np.random.Generator, terrain: Terrain, fields: ParcelGrid, style: RegionStyle
) -> np.ndarray:
    """``uint16 [H, W]`` codes of the countryside: fields, forest, natural grass, rock, beach."""
    shape = terrain.elevation_m.shape
    draw = rng.random(fields.count)
    pasture = style.pasture_share
    permanent = pasture + style.permanent_crop_share
    complex_patterns = permanent + 0.07
    field_codes = np.select(
        [draw < pasture, draw < permanent, draw < complex_patterns],
        [23000, 22000, 24000],
        default=21000,
    ).astype(np.uint16)
    codes = field_codes[fields.ids]

    land = ~terrain.water
    slope = cv2.GaussianBlur(terrain.slope_deg, (0, 0), 4)
    forest_score = (
        blob_noise(rng, shape, sigma_px=16)
        + 0.4 * fractal_noise(rng, shape, beta=2.4)
        + 1.5 * terrain.relative_height
        + slope / 30
    )
    forest = forest_score > _quantile(forest_score, land, 1 - style.forest_share)
    natural_score = blob_noise(rng, shape, sigma_px=10) + 2.5 * terrain.relative_height + slope / 20
    open_land = land & ~forest
    natural_share = min(style.herbaceous_share / max(1 - style.forest_share, 1e-3), 1.0)
    natural = open_land & (natural_score > _quantile(natural_score, open_land, 1 - natural_share))
    codes[forest] = 31000
    codes[natural] = 32000
    bare = (natural | forest) & ((terrain.relative_height > 0.85) | (slope > 40))
    if style.snow_line_m is not None:
        bare |= land & (terrain.elevation_m > style.snow_line_m)
    codes[bare] = 33000
    codes[land & _near(terrain.sea, 2)] = 33000
    return codes


def _block_codes(
    rng: np.random.Generator,
    blocks: ParcelGrid,
    urbanness: np.ndarray,
    terrain: Terrain,
    style: RegionStyle,
) -> np.ndarray:
    """``uint16 [block count]`` code of each street block, 0 for blocks outside the towns."""
    density = blocks.mean(urbanness)
    urban = density >= _URBAN_THRESHOLD
    codes = np.zeros(blocks.count, dtype=np.uint16)
    for threshold, code in reversed(_DENSITY_CODES):
        codes[urban & (density >= threshold)] = code

    zoning = blocks.mean(blob_noise(rng, urbanness.shape, sigma_px=18))
    industrial_score = zoning + 0.8 * ((density > 0.25) & (density < 0.65))
    candidates = urban & (density < 0.8)
    if candidates.any():
        cut = np.quantile(industrial_score[candidates], 1 - min(1.3 * style.industrial_share, 1))
        codes[candidates & (industrial_score > cut)] = 12100

    draw = rng.random(blocks.count)
    codes[urban & (draw < 0.06) & (density < 0.9)] = 14100
    codes[urban & (draw >= 0.06) & (draw < 0.09)] = 14200
    codes[urban & (draw >= 0.09) & (draw < 0.105)] = 13300
    codes[urban & (draw >= 0.105) & (draw < 0.125) & (density < 0.4)] = 13400
    if terrain.sea.any():
        seaside = blocks.mean(_near(terrain.sea, 4).astype(np.float32)) > 0.1
        codes[urban & seaside & (density > 0.3) & (draw > 0.5)] = 12300
    return codes


def _add_scattered_sites(
    rng: np.random.Generator, codes: np.ndarray, terrain: Terrain, towns: list[Town]
) -> None:
    """Isolated farm buildings, and maybe an airport and a quarry, drawn into ``codes``."""
    height, width = codes.shape
    farmland = (codes >= 21000) & (codes < 25000)
    scale = height * width / REFERENCE_AREA_PX
    for _ in range(round(30 * scale)):
        y, x = int(rng.uniform(0, height - 3)), int(rng.uniform(0, width - 3))
        if farmland[y, x]:
            codes[y : y + rng.integers(2, 4), x : x + rng.integers(2, 5)] = 11300
    main_town = towns[0]
    if rng.random() < 0.4 and float(np.median(terrain.slope_deg)) < 4:
        angle = rng.uniform(0, 180)
        distance = main_town.radius * rng.uniform(1.2, 1.6)
        bearing = rng.uniform(0, 2 * np.pi)
        centre = (
            main_town.x + distance * np.cos(bearing),
            main_town.y + distance * np.sin(bearing),
        )
        corners = cv2.boxPoints((centre, (75, 20), angle)).astype(np.int32)
        airport = np.zeros(codes.shape, dtype=np.uint8)
        cv2.fillPoly(airport, [corners], 1)
        codes[(airport > 0) & ~terrain.water] = 12400
    if rng.random() < 0.5:
        y, x = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
        quarry = np.zeros(codes.shape, dtype=np.uint8)
        axes = (int(rng.uniform(6, 14)), int(rng.uniform(4, 10)))
        cv2.ellipse(quarry, (int(x), int(y)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
        codes[(quarry > 0) & ~terrain.water & (codes >= 20000)] = 13100


def _draw_transport(
    rng: np.random.Generator, codes: np.ndarray, terrain: Terrain, towns: list[Town]
) -> None:
    """Roads between the towns and out of the canvas, a motorway and maybe a railway."""
    height, width = codes.shape
    main = towns[0]
    network = np.zeros(codes.shape, dtype=np.uint16)
    settlements = [town for town in towns if town.radius > 20] + towns[-2:]
    for index, town in enumerate(settlements[1:], start=1):
        nearest = min(settlements[:index], key=lambda t: np.hypot(t.x - town.x, t.y - town.y))
        _draw_road(rng, network, (town.x, town.y), (nearest.x, nearest.y), 2, 12220)
    for _ in range(2):
        _draw_road(rng, network, (main.x, main.y), _edge_point(rng, width, height), 2, 12220)
    through = [_edge_point(rng, width, height), (main.x + main.radius * 0.8, main.y)]
    _draw_road(rng, network, through[0], through[1], 3, 12210)
    _draw_road(rng, network, through[1], _edge_point(rng, width, height), 3, 12210)
    if rng.random() < 0.6:
        station = (main.x - main.radius * 0.3, main.y + main.radius * 0.2)
        _draw_road(rng, network, _edge_point(rng, width, height), station, 2, 12230)
        _draw_road(rng, network, station, _edge_point(rng, width, height), 2, 12230)
    drawn = (network > 0) & ~terrain.sea & ~terrain.lake & (codes != 12400)
    codes[drawn] = network[drawn]


def _draw_road(
    rng: np.random.Generator,
    canvas: np.ndarray,
    start: tuple[float, float],
    end: tuple[float, float],
    thickness: int,
    code: int,
) -> None:
    """A gently winding line from ``start`` to ``end`` (pixel ``(x, y)``), burnt into ``canvas``."""
    start_xy, end_xy = np.asarray(start), np.asarray(end)
    length = float(np.hypot(*(end_xy - start_xy)))
    if length < 2:
        return
    steps = max(int(length / 4), 2)
    along = np.linspace(0, 1, steps)[:, None]
    normal = np.array([-(end_xy - start_xy)[1], (end_xy - start_xy)[0]]) / length
    harmonics = np.arange(1, 4)
    amplitudes = rng.normal(0, 0.04, 3) * length / harmonics
    wobble = np.sin(np.pi * along * harmonics) @ amplitudes
    points = start_xy + along * (end_xy - start_xy) + wobble[:, None] * normal
    cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, int(code), thickness)


def _edge_point(rng: np.random.Generator, width: int, height: int) -> tuple[float, float]:
    """A random point on the border of the canvas."""
    side = rng.integers(4)
    position = rng.uniform(0.1, 0.9)
    return [
        (position * width, 0.0),
        (position * width, height - 1.0),
        (0.0, position * height),
        (width - 1.0, position * height),
    ][side]


def _add_water_and_wetlands(rng: np.random.Generator, codes: np.ndarray, terrain: Terrain) -> None:
    """Water bodies over everything but bridges, and wetlands on low ground next to water."""
    roads = (codes >= 12200) & (codes < 12300)
    codes[terrain.water & ~(roads & terrain.river)] = 50000
    wet = (
        ~terrain.water
        & (terrain.distance_to_water_px <= 12)
        & (terrain.relative_height < 0.15)
        & (blob_noise(rng, codes.shape, sigma_px=6) > 0.6)
        & (codes >= 20000)
    )
    codes[wet] = 40000


def _parcel_states(
    rng: np.random.Generator, count: int, style: RegionStyle
) -> tuple[np.ndarray, np.ndarray]:
    """Greenness and moisture of each parcel, shifted by the region's dryness."""
    stage = rng.random(count)
    greenness = np.select(
        [stage < 0.25, stage < 0.55],
        [rng.uniform(0.0, 0.15, count), rng.uniform(0.2, 0.65, count)],
        default=rng.uniform(0.65, 1.0, count),
    )
    greenness = np.clip(greenness * (1 - 0.35 * style.dryness), 0, 1)
    moisture = np.clip(rng.beta(2, 2, count) - 0.3 * style.dryness + 0.15, 0, 1)
    return greenness.astype(np.float32), moisture.astype(np.float32)


def _quantile(values: np.ndarray, where: np.ndarray, q: float) -> float:
    """Quantile ``q`` of ``values`` over the pixels ``where`` (every 5th pixel, for speed)."""
    sample = values.ravel()[::5][where.ravel()[::5]]
    if sample.size == 0:
        return float("inf")
    return float(np.quantile(sample, np.clip(q, 0, 1)))


def _near(mask: np.ndarray, distance_px: int) -> np.ndarray:
    """``bool [H, W]``: pixels within ``distance_px`` (chessboard) of ``mask``."""
    kernel = np.ones((2 * distance_px + 1, 2 * distance_px + 1), dtype=np.uint8)
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0
