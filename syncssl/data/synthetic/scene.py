"""The room around the capture area, and each camera's static background, ray-cast once per camera.

One room per dataset: a tiled floor with a rug under the capture area, four walls of different colours with
posters, a door and skirting boards, a ceiling, and furniture-like boxes along the walls (behind the cameras,
so they never hide the person). Every camera sees its own part of the room from its own pose, so the
backgrounds differ between cameras but agree geometrically, and each stays the same for the whole dataset:
the static background is a real shortcut, and removing it a real problem.

Rays go through the lens model: each pixel's (sub-)sample is undistorted to a normalised ray direction
(x, y, 1) in camera coordinates, so straight edges bend exactly as the calibration says.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ...geometry import Camera, undistort
from .body import stable_hash

# Towards the main light (world): high above, a little to the front-right of the room. The body's shading
# and its shadow on the floor use the same direction.
LIGHT = np.array([0.35, -0.25, 1.0]) / np.linalg.norm([0.35, -0.25, 1.0])


@dataclass(frozen=True)
class Box:
    """A piece of furniture: an axis-aligned box (mm) of one colour."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    colour: tuple[float, float, float]


@dataclass(frozen=True)
class Poster:
    """A rectangle on a wall with horizontal stripes (a picture, a door, a whiteboard)."""

    wall: int  # 0: x = -X, 1: x = +X, 2: y = -Y, 3: y = +Y
    centre: tuple[float, float]  # (position along the wall, height), mm
    size: tuple[float, float]  # (width, height), mm
    colour: tuple[float, float, float]
    stripe_colour: tuple[float, float, float]
    stripes: int  # number of stripes (0: plain)


@dataclass(frozen=True, eq=False)
class Room:
    """The static scene, mm, z up, the capture area around the origin."""

    half_x: float  # walls at x = +-half_x
    half_y: float  # walls at y = +-half_y
    height: float  # ceiling
    tile: float  # floor tile size
    floor_colours: np.ndarray  # (2, 3) alternating tiles
    rug: tuple[float, float]  # half-size of the rug under the capture area (x, y)
    rug_colours: np.ndarray  # (2, 3) rug field and border
    wall_colours: np.ndarray  # (4, 3) one per wall
    ceiling_colour: np.ndarray  # (3,)
    posters: tuple[Poster, ...]
    boxes: tuple[Box, ...]
    texture: np.ndarray  # (64, 64) value noise in [-1, 1]: mottles every surface


def make_room(seed: int) -> Room:
    rng = np.random.default_rng([seed, stable_hash("room")])
    X, Y, H = 7000.0, 6500.0, 3400.0

    def muted():
        return rng.uniform(90, 200) + rng.uniform(-35, 35, 3)

    posters = []
    for wall in range(4):
        length = 2 * (Y if wall < 2 else X)
        for _ in range(rng.integers(2, 5)):
            w, h = rng.uniform(500, 1600), rng.uniform(400, 1100)
            posters.append(Poster(wall, (rng.uniform(-length / 2 + w, length / 2 - w), rng.uniform(900, 2200)),
                                  (w, h), tuple(rng.uniform(20, 235, 3)), tuple(rng.uniform(20, 235, 3)),
                                  int(rng.choice([0, 0, 3, 5, 8]))))
        # a door
        posters.append(Poster(wall, (rng.uniform(-length / 2 + 800, length / 2 - 800), 1050), (900, 2100),
                              tuple(rng.uniform(60, 140, 3)), (40.0, 40.0, 40.0), 0))
    boxes = []
    for _ in range(rng.integers(5, 9)):
        # Along a wall, in the band behind the cameras (they stand at most 5.8 m from the centre).
        wall = rng.integers(4)
        sx, sy, sz = rng.uniform(400, 1600), rng.uniform(400, 900), rng.uniform(400, 1900)
        if wall < 2:
            sx, sy = sy, sx
            x0 = -X if wall == 0 else X - sx
            y0 = rng.uniform(-Y, Y - sy)
        else:
            y0 = -Y if wall == 2 else Y - sy
            x0 = rng.uniform(-X, X - sx)
        boxes.append(Box((x0, y0, 0.0), (x0 + sx, y0 + sy, sz), tuple(rng.uniform(30, 220, 3))))
    return Room(
        half_x=X, half_y=Y, height=H, tile=rng.uniform(450, 650),
        floor_colours=np.stack([muted(), muted()]), rug=(rng.uniform(1800, 2300), rng.uniform(1800, 2300)),
        rug_colours=np.stack([muted(), rng.uniform(30, 220, 3)]), wall_colours=np.stack([muted() for _ in range(4)]),
        ceiling_colour=np.full(3, 215.0), posters=tuple(posters), boxes=tuple(boxes),
        texture=rng.uniform(-1, 1, (64, 64)),
    )


# ---------------------------------------------------------------- rays


@lru_cache(maxsize=16)  # per Camera object (cameras compare by identity): the renderer asks twice
def pixel_rays(camera: Camera, supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Normalised, undistorted ray directions (x, y) for a grid of ``supersample``^2 samples per pixel.

    Sample (i, j) of the (H*s, W*s) grid sits at pixel coordinates ((j + 0.5) / s - 0.5, (i + 0.5) / s - 0.5)
    (pixel centres at integers). The ray through it is (x, y, 1) in camera coordinates; ``Camera.project`` of
    any point on that ray lands on the sample.
    """
    w, h = camera.size
    s = supersample
    u = (np.arange(w * s) + 0.5) / s - 0.5
    v = (np.arange(h * s) + 0.5) / s - 0.5
    K = camera.K
    yn = (v - K[1, 2]) / K[1, 1]
    xn = (u[None, :] - K[0, 2] - K[0, 1] * yn[:, None]) / K[0, 0]
    xy = np.stack([xn, np.broadcast_to(yn[:, None], xn.shape)], -1)
    if np.any(camera.dist != 0):
        xy = undistort(xy, camera.dist, camera.model, iterations=10)  # contracts ~10x per step here
    return xy[..., 0], xy[..., 1]


def cast(room: Room, camera: Camera, x: np.ndarray, y: np.ndarray):
    """Nearest surface along each ray (x, y, 1): world points (..., 3), normals (..., 3), surface ids (...).

    Surface ids: 0 floor, 1 ceiling, 2..5 walls (x-, x+, y-, y+), 6.. boxes.
    """
    C = camera.center
    d = np.stack([x, y, np.ones_like(x)], -1) @ camera.R  # world directions (R^T d)
    with np.errstate(divide="ignore", invalid="ignore"):
        bounds = np.array([[-room.half_x, room.half_x], [-room.half_y, room.half_y], [0.0, room.height]])
        # Inside the room: the exit through each slab; the nearest one is the surface hit.
        t_axes = np.stack([(np.where(d[..., a] > 0, bounds[a, 1], bounds[a, 0]) - C[a]) / d[..., a]
                           for a in range(3)], -1)
        t_axes = np.where(t_axes > 0, t_axes, np.inf)
        axis = np.argmin(t_axes, -1)
        t = np.take_along_axis(t_axes, axis[..., None], -1)[..., 0]
        positive = np.take_along_axis(d, axis[..., None], -1)[..., 0] > 0
        # axis 2 (z): floor if going down, ceiling if up; axis 0/1: walls
        surface = np.where(axis == 2, positive.astype(int), 2 + 2 * axis + positive)
        normal = np.zeros(d.shape)
        np.put_along_axis(normal, axis[..., None], np.where(positive, -1.0, 1.0)[..., None], -1)
        for k, box in enumerate(room.boxes):
            lo, hi = np.asarray(box.lo) - C, np.asarray(box.hi) - C
            t1, t2 = lo / d, hi / d
            tmin = np.minimum(t1, t2)
            t_near, t_far = tmin.max(-1), np.maximum(t1, t2).min(-1)
            hit = (t_near <= t_far) & (t_near > 0) & (t_near < t)
            if not hit.any():
                continue
            t[hit] = t_near[hit]
            surface[hit] = 6 + k
            face = np.argmax(tmin[hit], -1)
            n = np.zeros((int(hit.sum()), 3))
            n[np.arange(len(n)), face] = -np.sign(d[hit][np.arange(len(n)), face])
            normal[hit] = n
    points = C + t[..., None] * d
    return points, normal, surface


# ---------------------------------------------------------------- materials and light


def _noise(room: Room, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear value noise in [-1, 1], periodic, at texture coordinates (u, v) (one unit = one cell)."""
    n = room.texture.shape[0]
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    iu, iv = iu.astype(np.int64) % n, iv.astype(np.int64) % n
    g = room.texture
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    return ((g[iu, iv] * (1 - fu) + g[(iu + 1) % n, iv] * fu) * (1 - fv)
            + (g[iu, (iv + 1) % n] * (1 - fu) + g[(iu + 1) % n, (iv + 1) % n] * fu) * fv)


def _floor(room: Room, p: np.ndarray) -> np.ndarray:
    """Tiles with grout lines, each tile a little different; a bordered rug in the middle. p (N, 3)."""
    x, y = p[:, 0], p[:, 1]
    ti, tj = np.floor(x / room.tile), np.floor(y / room.tile)
    checker = ((ti + tj) % 2).astype(int)
    tile_jitter = 1 + 0.07 * np.sin(ti * 12.9898 + tj * 78.233) * np.cos(ti * 3.1 - tj * 5.7)
    fx, fy = x / room.tile - ti, y / room.tile - tj
    grout = (np.minimum(np.minimum(fx, 1 - fx), np.minimum(fy, 1 - fy)) * room.tile) < 10
    col = room.floor_colours[checker] * np.where(grout, 0.55, tile_jitter)[:, None]
    rx, ry = room.rug
    on_rug = (np.abs(x) < rx) & (np.abs(y) < ry)
    border = on_rug & ((np.abs(x) > rx - 180) | (np.abs(y) > ry - 180))
    weave = 1 + 0.06 * np.sign(np.sin(x / 40.0) * np.sin(y / 40.0))
    col[on_rug] = room.rug_colours[0] * weave[on_rug, None]
    col[border] = room.rug_colours[1]
    return col


def _wall(room: Room, wall: int, p: np.ndarray) -> np.ndarray:
    """Base colour, a dark skirting board, posters with frames and stripes, a door. p (N, 3)."""
    along, z = (p[:, 1] if wall < 2 else p[:, 0]), p[:, 2]
    col = np.tile(room.wall_colours[wall], (len(p), 1))
    col[z < 120] *= 0.5
    for ps in room.posters:
        if ps.wall != wall:
            continue
        du, dz = np.abs(along - ps.centre[0]), np.abs(z - ps.centre[1])
        inside = (du < ps.size[0] / 2) & (dz < ps.size[1] / 2)
        if not inside.any():
            continue
        pc = np.tile(np.asarray(ps.colour, float), (int(inside.sum()), 1))
        if ps.stripes:
            k = np.floor((z[inside] - ps.centre[1] + ps.size[1] / 2) / ps.size[1] * ps.stripes * 2) % 2
            pc[k == 1] = ps.stripe_colour
        frame = ~((du[inside] < ps.size[0] / 2 - 30) & (dz[inside] < ps.size[1] / 2 - 30))
        pc[frame] = 35.0
        col[inside] = pc
    return col


def _albedo(room: Room, p: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """Surface colours (..., 3) at world points p (..., 3) on surfaces ``surface`` (...)."""
    shape = p.shape
    p, surface = p.reshape(-1, 3), surface.reshape(-1)
    col = np.zeros(p.shape)
    on = surface == 0
    col[on] = _floor(room, p[on])
    col[surface == 1] = room.ceiling_colour
    for wall in range(4):
        on = surface == 2 + wall
        if on.any():
            col[on] = _wall(room, wall, p[on])
    for k, box in enumerate(room.boxes):
        col[surface == 6 + k] = box.colour
    # mottling at two scales so that no surface is flat
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    mottle = 1 + 0.10 * _noise(room, (x + 0.7 * z) / 700, (y - 0.5 * z) / 700) \
        + 0.05 * _noise(room, (x - 0.3 * z) / 90 + 17, (y + 0.6 * z) / 90 + 29)
    return (col * mottle[:, None]).reshape(shape)


def _lighting(p: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Ambient + the main light + a soft studio spotlight on the capture area."""
    diffuse = np.clip(normal @ LIGHT, 0, None)
    spot = np.exp(-(p[..., 0] ** 2 + p[..., 1] ** 2) / (2 * 3500.0 ** 2))
    return 0.55 + 0.25 * diffuse + 0.3 * spot


@dataclass
class Background:
    """What one camera sees of the empty room."""

    image: np.ndarray  # (H, W, 3) float32, 0..255, anti-aliased
    floor_xy: np.ndarray  # (H, W, 2) float32 world (x, y) mm of the floor at each pixel centre; NaN elsewhere


def render_background(room: Room, camera: Camera, supersample: int = 2) -> Background:
    w, h = camera.size
    s = supersample
    x, y = pixel_rays(camera, s)
    p, n, surface = cast(room, camera, x, y)
    rgb = _albedo(room, p, surface) * _lighting(p, n)[..., None]
    image = rgb.reshape(h, s, w, s, 3).mean((1, 3)).astype(np.float32)
    x1, y1 = pixel_rays(camera, 1)
    p1, _, surf1 = cast(room, camera, x1, y1)
    floor_xy = np.where((surf1 == 0)[..., None], p1[..., :2], np.nan).astype(np.float32)
    return Background(np.clip(image, 0, 255), floor_xy)
