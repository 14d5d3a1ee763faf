"""The synthetic regions of the quadruplet dataset and what sets each apart.

Region names borrow real cities of France and Australia (the paper's regions lie there) behind a
``synthetic_`` prefix: the scenes are invented, only the map projection and the rough position of
each grid are real. Regions differ in relief, town size, field size, forest cover, water, climate
(dryness, snow) and in the sensors' radiometric offsets, so that the two validation and two test
regions are a modest domain shift from the ten training regions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegionStyle:
    """Everything that makes one synthetic region look the way it does.

    Fields after ``centre_en`` default to a lowland, temperate, mixed-farming landscape.

    Attributes:
        name: region folder name, ``synthetic_<city>``.
        split: ``train``, ``val`` or ``test``.
        epsg: projected CRS of the region's grids (a WGS 84 / UTM zone).
        centre_en: easting and northing of the region's centre, metres.
        base_elevation_m: elevation of the lowest ground.
        relief_m: typical height difference between valleys and hilltops.
        towns: number of towns on a 10 x 15 km region (scaled with the area).
        town_radius_px: radius of the largest town's built-up area, in 10 m pixels.
        block_px: side of an urban block between streets, pixels.
        field_px: typical side of an agricultural parcel, pixels.
        field_angle_deg: orientation of the field and street grids.
        forest_share: fraction of the rural land under forest.
        herbaceous_share: fraction of the rural land under natural grass, moor or rock.
        lake_share: fraction of the region under lakes.
        rivers: number of rivers crossing the region.
        river_width_px: width of the largest river, pixels.
        coast: side of the region facing the sea (``north``, ``south``, ``east``, ``west``) or
            None inland.
        dryness: 0 (green, oceanic) .. 1 (dry summer, brown grass).
        snow_line_m: elevation above which open ground is snow covered, or None.
        industrial_share: probability that an urban block is industrial or commercial.
        pasture_share: share of the agricultural parcels that are pastures.
        permanent_crop_share: share of vineyards and orchards among the parcels.
        spectral_gain: multiplicative calibration offset of the Sentinel-2 bands B2, B3, B4, B8.
        haze: additive path radiance in B2 (reflectance x 10000; B3 and B4 get less).
        backscatter_offset_db: calibration offset added to both Sentinel-1 channels.
    """

    name: str
    split: str
    epsg: int
    centre_en: tuple[float, float]
    base_elevation_m: float = 100.0
    relief_m: float = 60.0
    towns: int = 3
    town_radius_px: float = 180.0
    block_px: float = 14.0
    field_px: float = 30.0
    field_angle_deg: float = 10.0
    forest_share: float = 0.2
    herbaceous_share: float = 0.06
    lake_share: float = 0.005
    rivers: int = 1
    river_width_px: float = 4.0
    coast: str | None = None
    dryness: float = 0.3
    snow_line_m: float | None = None
    industrial_share: float = 0.15
    pasture_share: float = 0.25
    permanent_crop_share: float = 0.05
    spectral_gain: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    haze: float = 60.0
    backscatter_offset_db: float = 0.0


REGIONS: tuple[RegionStyle, ...] = (
    RegionStyle(
        name="synthetic_lyon", split="train", epsg=32631, town_radius_px=260,
        centre_en=(643_000, 5_069_000), base_elevation_m=165, relief_m=140, towns=3, rivers=2,
        river_width_px=7, industrial_share=0.22, field_angle_deg=-15,
    ),
    RegionStyle(
        name="synthetic_toulouse", split="train", epsg=32631, town_radius_px=240,
        centre_en=(374_000, 4_829_000), base_elevation_m=140, relief_m=45, towns=2, field_px=45,
        forest_share=0.1, dryness=0.55, river_width_px=6, spectral_gain=(1.03, 1.02, 1.04, 0.97),
    ),
    RegionStyle(
        name="synthetic_nantes", split="train", epsg=32630, centre_en=(610_000, 5_231_000),
        base_elevation_m=8, relief_m=30, towns=3, field_px=22, pasture_share=0.45,
        river_width_px=12, lake_share=0.01, dryness=0.15, haze=90,
    ),
    RegionStyle(
        name="synthetic_strasbourg", split="train", epsg=32632, town_radius_px=220,
        centre_en=(408_000, 5_382_000), base_elevation_m=135, relief_m=18, towns=3, field_px=26,
        forest_share=0.28, rivers=2, river_width_px=9, field_angle_deg=30,
        backscatter_offset_db=0.6,
    ),
    RegionStyle(
        name="synthetic_grenoble", split="train", epsg=32631, town_radius_px=150,
        centre_en=(714_000, 5_008_000), base_elevation_m=220, relief_m=1200, towns=2,
        forest_share=0.5, herbaceous_share=0.2, snow_line_m=1700, field_px=20, pasture_share=0.5,
        spectral_gain=(0.97, 0.98, 0.98, 1.03),
    ),
    RegionStyle(
        name="synthetic_bordeaux", split="train", epsg=32630, town_radius_px=240,
        centre_en=(691_000, 4_968_000), base_elevation_m=10, relief_m=50, towns=2,
        permanent_crop_share=0.45, pasture_share=0.1, forest_share=0.25, river_width_px=14,
        dryness=0.45, haze=75,
    ),
    RegionStyle(
        name="synthetic_lille", split="train", epsg=32631, town_radius_px=250,
        centre_en=(504_000, 5_609_000), base_elevation_m=25, relief_m=12, towns=5, block_px=12,
        industrial_share=0.3, field_px=36, forest_share=0.07, rivers=1, river_width_px=3, haze=110,
        spectral_gain=(1.05, 1.03, 1.02, 0.98),
    ),
    RegionStyle(
        name="synthetic_canberra", split="train", epsg=32755, town_radius_px=220,
        centre_en=(694_000, 6_094_000), base_elevation_m=560, relief_m=180, towns=2, block_px=18,
        lake_share=0.025, field_px=55, pasture_share=0.6, dryness=0.8, forest_share=0.18,
        herbaceous_share=0.15, industrial_share=0.1, field_angle_deg=40,
        spectral_gain=(1.02, 1.03, 1.06, 0.96), haze=40,
    ),
    RegionStyle(
        name="synthetic_melbourne", split="train", epsg=32755, town_radius_px=280,
        centre_en=(320_000, 5_813_000), base_elevation_m=5, relief_m=45, towns=3, block_px=16,
        coast="south", field_px=48, pasture_share=0.5, dryness=0.65, forest_share=0.1,
        industrial_share=0.2, backscatter_offset_db=-0.5,
    ),
    RegionStyle(
        name="synthetic_adelaide", split="train", epsg=32754, town_radius_px=240,
        centre_en=(281_000, 6_132_000), base_elevation_m=5, relief_m=320, towns=2, block_px=17,
        coast="west", field_px=50, pasture_share=0.35, permanent_crop_share=0.2, dryness=0.9,
        forest_share=0.12, herbaceous_share=0.18, rivers=0, spectral_gain=(1.04, 1.05, 1.08, 0.95),
        haze=35,
    ),
    RegionStyle(
        name="synthetic_montpellier", split="val", epsg=32631, town_radius_px=200,
        centre_en=(571_000, 4_829_000), base_elevation_m=3, relief_m=120, towns=3, coast="south",
        permanent_crop_share=0.4, pasture_share=0.1, dryness=0.75, herbaceous_share=0.2,
        forest_share=0.15, lake_share=0.02, spectral_gain=(1.03, 1.04, 1.05, 0.97),
        backscatter_offset_db=0.4,
    ),
    RegionStyle(
        name="synthetic_brisbane", split="val", epsg=32756, town_radius_px=260,
        centre_en=(503_000, 6_962_000), base_elevation_m=10, relief_m=160, towns=2, block_px=17,
        river_width_px=10, field_px=40, pasture_share=0.5, dryness=0.2, forest_share=0.3,
        spectral_gain=(0.98, 1.0, 0.98, 1.04), haze=90,
    ),
    RegionStyle(
        name="synthetic_rennes", split="test", epsg=32630, town_radius_px=190,
        centre_en=(598_000, 5_329_000), base_elevation_m=40, relief_m=45, towns=3, field_px=20,
        pasture_share=0.5, forest_share=0.15, dryness=0.15, rivers=2, river_width_px=4,
        field_angle_deg=-25, backscatter_offset_db=-0.4,
    ),
    RegionStyle(
        name="synthetic_hobart", split="test", epsg=32755, town_radius_px=170,
        centre_en=(527_000, 5_252_000), base_elevation_m=0, relief_m=450, towns=2, block_px=16,
        coast="east", forest_share=0.55, herbaceous_share=0.12, field_px=35, pasture_share=0.55,
        dryness=0.35, spectral_gain=(0.97, 0.99, 0.97, 1.02), haze=50,
    ),
)  # fmt: skip
"""The fourteen regions: ten for training, two for validation, two for testing."""

REGIONS_BY_NAME: dict[str, RegionStyle] = {region.name: region for region in REGIONS}
"""The regions, by folder name."""
