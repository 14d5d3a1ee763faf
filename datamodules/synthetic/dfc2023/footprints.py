"""Building footprints as polygons: rotated rectangles and L-shapes, clipping, area.

Coordinates are ``(x, y)`` pixels with the MS COCO convention (the image spans ``[0, width] x
[0, height]``). Vertices are rounded to `VERTEX_DECIMALS` decimals before any use, so the
rasters rendered from a footprint and the annotation written for it agree exactly.
"""

from __future__ import annotations

import numpy as np

VERTEX_DECIMALS = 1


def rectangle(
    centre: tuple[float, float], length: float, width: float, angle_deg: float
) -> np.ndarray:
    """A rotated rectangle.

    Args:
        centre: ``(x, y)`` of the centre.
        length: side along the rotated x axis, pixels.
        width: side along the rotated y axis, pixels.
        angle_deg: angle of the length axis from the image x axis towards the y axis (clockwise
            on screen, where y points down).

    Returns:
        ``[4, 2]`` vertices.
    """
    local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [length / 2, width / 2]
    return _place(local, centre, angle_deg)


def l_shape(
    centre: tuple[float, float],
    length: float,
    width: float,
    angle_deg: float,
    notch: tuple[float, float],
) -> np.ndarray:
    """A rotated L-shaped footprint: a rectangle with one corner cut out.

    Args:
        centre: ``(x, y)`` of the bounding rectangle's centre.
        length: bounding side along the rotated x axis, pixels.
        width: bounding side along the rotated y axis, pixels.
        angle_deg: angle of the length axis, as in `rectangle`.
        notch: size of the removed corner as fractions ``(of length, of width)``, each in
            ``(0, 1)``.

    Returns:
        ``[6, 2]`` vertices.
    """
    half_l, half_w = length / 2, width / 2
    cut_x = -half_l + (1 - notch[0]) * length
    cut_y = half_w - notch[1] * width
    local = np.array(
        [
            [-half_l, -half_w],
            [half_l, -half_w],
            [half_l, cut_y],
            [cut_x, cut_y],
            [cut_x, half_w],
            [-half_l, half_w],
        ]
    )
    return _place(local, centre, angle_deg)


def clip_to_image(polygon_xy: np.ndarray, width: int, height: int) -> np.ndarray:
    """The part of a polygon inside the image (Sutherland-Hodgman clipping).

    Args:
        polygon_xy: ``[N, 2]`` vertices.
        width: image width, pixels.
        height: image height, pixels.

    Returns:
        ``[M, 2]`` vertices of the clipped polygon, rounded like every footprint; M may be 0.
    """
    boundaries = ((0, 0.0, 1), (0, float(width), -1), (1, 0.0, 1), (1, float(height), -1))
    points = [tuple(p) for p in np.asarray(polygon_xy, dtype=np.float64)]
    for axis, limit, keep_sign in boundaries:
        if not points:
            break
        clipped = []
        for index, current in enumerate(points):
            previous = points[index - 1]
            current_in = keep_sign * (current[axis] - limit) >= 0
            previous_in = keep_sign * (previous[axis] - limit) >= 0
            if current_in != previous_in:
                t = (limit - previous[axis]) / (current[axis] - previous[axis])
                clipped.append(
                    tuple(p + t * (c - p) for p, c in zip(previous, current, strict=True))
                )
            if current_in:
                clipped.append(current)
        points = clipped
    return np.round(np.array(points, dtype=np.float64).reshape(-1, 2), VERTEX_DECIMALS)


def polygon_area(polygon_xy: np.ndarray) -> float:
    """Area of a simple polygon (shoelace formula), in square pixels."""
    x, y = np.asarray(polygon_xy, dtype=np.float64).T
    x_next, y_next = np.append(x[1:], x[:1]), np.append(y[1:], y[:1])
    return float(abs(np.dot(x, y_next) - np.dot(y, x_next)) / 2)


def to_local(
    points_xy: np.ndarray, centre: tuple[float, float], angle_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along and across a footprint's length axis (inverse of the placement).

    Args:
        points_xy: ``(x, y)`` arrays stacked on the last axis, any leading shape.
        centre: footprint centre.
        angle_deg: footprint angle, as in `rectangle`.

    Returns:
        ``(along, across)`` arrays of the leading shape.
    """
    dx = points_xy[..., 0] - centre[0]
    dy = points_xy[..., 1] - centre[1]
    angle = np.radians(angle_deg)
    return dx * np.cos(angle) + dy * np.sin(angle), dy * np.cos(angle) - dx * np.sin(angle)


def _place(local_xy: np.ndarray, centre: tuple[float, float], angle_deg: float) -> np.ndarray:
    """Rotate local vertices by ``angle_deg``, move them to ``centre`` and round them."""
    angle = np.radians(angle_deg)
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    return np.round(local_xy @ rotation + np.asarray(centre), VERTEX_DECIMALS)
