"""A small ray caster for the synthetic people: capsules and ellipsoids over a static, pre-rendered background.

Limbs are capsules between joints; pelvis, chest and head are ellipsoids oriented by the joints' global
rotations. Every sample's ray is the undistorted direction (x, y, 1) of its pixel position (see
:func:`scene.pixel_rays`), so a 3D point and its ``Camera.project`` agree exactly, lens distortion included;
with d = (x, y, 1) the ray parameter t *is* the depth z. Only samples inside each primitive's screen-space
bound are cast, and ``supersample``^2 samples per pixel give anti-aliased edges and a coverage (alpha)
from which the ground-truth mask (coverage >= 1/2) and the person box come.

Shading: Lambert from the room's main light plus ambient and a weak headlight (so that backs are not
black). The person casts a soft shadow on the floor along the same light, which background subtraction
has to cope with (the ground-truth mask excludes it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...geometry import Camera, project
from .body import J, Subject
from .scene import LIGHT, Room, pixel_rays, render_background

# ---------------------------------------------------------------- materials


@dataclass(frozen=True)
class Plain:
    colour: tuple

    def capsule(self, axial: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.colour, np.float32), axial.shape + (3,))


@dataclass(frozen=True)
class Striped:
    """Bands across a limb, ``period`` mm apart (a striped trouser leg)."""

    colour: tuple
    stripe: tuple
    period: float = 110.0

    def capsule(self, axial: np.ndarray) -> np.ndarray:
        on = (np.floor(axial / (self.period / 2)) % 2) == 1
        return np.where(on[:, None], np.asarray(self.stripe, np.float32), np.asarray(self.colour, np.float32))


@dataclass(frozen=True)
class Torso:
    """Shirt with a round logo on one side of the chest and optionally a diagonal bag strap."""

    shirt: tuple
    logo: tuple
    logo_side: int  # +1 left, -1 right (the body's y axis points left)
    strap: tuple | None
    strap_side: int  # shoulder the strap hangs from

    def ellipsoid(self, u: np.ndarray) -> np.ndarray:
        col = np.broadcast_to(np.asarray(self.shirt, np.float32), u.shape).copy()
        c = np.array([0.82, 0.42 * self.logo_side, 0.38])
        col[np.sum((u - c / np.linalg.norm(c)) ** 2, -1) < 0.07] = self.logo
        if self.strap is not None:
            # a band from the top of one shoulder down to the opposite hip, front and back
            p0, p1 = np.array([0.55 * self.strap_side, 0.85]), np.array([-0.75 * self.strap_side, -0.9])
            d = (p1 - p0) / np.linalg.norm(p1 - p0)
            rel = u[:, 1:] - p0
            dist = np.abs(rel[:, 0] * d[1] - rel[:, 1] * d[0])
            col[dist < 0.11] = self.strap
        return col


@dataclass(frozen=True)
class Head:
    skin: tuple
    hair: tuple

    def ellipsoid(self, u: np.ndarray) -> np.ndarray:
        hair = (u[:, 0] < -0.15) | (u[:, 2] > 0.45 - 0.25 * u[:, 0])
        return np.where(hair[:, None], np.asarray(self.hair, np.float32), np.asarray(self.skin, np.float32))


@dataclass(frozen=True)
class PlainEllipsoid:
    colour: tuple

    def ellipsoid(self, u: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.colour, np.float32), u.shape)


# ---------------------------------------------------------------- the body as primitives


@dataclass
class BodyFrame:
    """The body's primitives at one instant, world coordinates (mm)."""

    cap_a: np.ndarray  # (Nc, 3) capsule ends
    cap_b: np.ndarray  # (Nc, 3)
    ell_centre: np.ndarray  # (Ne, 3)
    ell_axes: np.ndarray  # (Ne, 3, 3) columns: the ellipsoid's forward, left, up axes
    shadow_a: np.ndarray  # (Ns, 3) segments that cast the floor shadow
    shadow_b: np.ndarray  # (Ns, 3)


class Body:
    """A subject's primitives: which joints each one spans, its thickness and its material."""

    # (from joint, to joint, radius key)
    CAPSULES = (
        ("r_hip", "r_knee", "thigh"), ("r_knee", "r_foot", "shin"), ("r_foot", "r_toe", "foot"),
        ("l_hip", "l_knee", "thigh"), ("l_knee", "l_foot", "shin"), ("l_foot", "l_toe", "foot"),
        ("r_shoulder", "r_elbow", "upper_arm"), ("r_elbow", "r_wrist", "forearm"), ("r_wrist", "r_hand", "hand"),
        ("l_shoulder", "l_elbow", "upper_arm"), ("l_elbow", "l_wrist", "forearm"), ("l_wrist", "l_hand", "hand"),
        ("thorax", "neck", "neck"), ("hip", "spine", "belly"),  # the belly last: it starts above the hip joint
    )
    # (joint whose position and rotation place it, radius key); the centre offsets are set in __init__
    ELLIPSOIDS = (("hip", "pelvis"), ("spine", "chest"), ("neck", "head"))
    # (from joint, to joint, half-width mm) of the segments whose projection along the light is the shadow
    SHADOW = (("hip", "thorax", 150.0), ("neck", "head", 95.0), ("r_hip", "r_knee", 70.0), ("r_knee", "r_foot", 55.0),
              ("l_hip", "l_knee", 70.0), ("l_knee", "l_foot", 55.0), ("r_shoulder", "r_elbow", 45.0),
              ("r_elbow", "r_hand", 40.0), ("l_shoulder", "l_elbow", 45.0), ("l_elbow", "l_hand", 40.0))

    def __init__(self, subject: Subject):
        self.subject = subject
        look = subject.look
        side = {"left": "l", "right": "r"}
        cap_mats = []
        for a, _b, key in self.CAPSULES:
            c = a[0] if a[1] == "_" else ""
            if key in ("thigh", "shin"):
                mat = Striped(look.trousers, look.stripes) if c == side[look.striped_leg] else Plain(look.trousers)
            elif key == "foot":
                mat = Plain(look.shoes)
            elif key in ("upper_arm", "forearm"):
                cloth = look.accent if c == side[look.accent_sleeve] else look.shirt
                mat = Plain(cloth if key == "upper_arm" or look.long_sleeves else look.skin)
            elif key in ("hand", "neck"):
                mat = Plain(look.skin)
            else:  # belly
                mat = Plain(look.shirt)
            cap_mats.append(mat)
        self.cap_from = np.array([J[a] for a, _, _ in self.CAPSULES])
        self.cap_to = np.array([J[b] for _, b, _ in self.CAPSULES])
        self.cap_radius = np.array([subject.radii[k] for _, _, k in self.CAPSULES], float)
        self.cap_mats = cap_mats
        sgn = {"left": 1, "right": -1}
        self.ell_joint = np.array([J[j] for j, _ in self.ELLIPSOIDS])
        self.ell_radii = np.stack([subject.radii[k] for _, k in self.ELLIPSOIDS])
        off = subject.offsets
        # centres in the placing joint's frame: pelvis a little above the hip joint, chest around the middle
        # of the spine->thorax bone, head between neck and head joints and slightly forward
        self.ell_offset = np.array([[0.0, 0.0, 40.0 * subject.radii["pelvis"][2] / 150.0],
                                    0.55 * off[J["thorax"]],
                                    0.55 * off[J["head"]] + np.array([12.0, 0, 0])])
        self.ell_mats = [PlainEllipsoid(look.trousers),
                         Torso(look.shirt, look.logo, sgn[look.logo_side], look.strap, sgn[look.strap_shoulder]),
                         Head(look.skin, look.hair)]
        self.shadow_from = np.array([J[a] for a, _, _ in self.SHADOW])
        self.shadow_to = np.array([J[b] for _, b, _ in self.SHADOW])
        trunk = subject.radii["chest"][1] / 175.0
        self.shadow_width = np.array([w * (trunk if i == 0 else 1.0) for i, (_, _, w) in enumerate(self.SHADOW)])

    def frame(self, joints: np.ndarray, rotations: np.ndarray) -> BodyFrame:
        """joints (NUM_JOINTS, 3), rotations (NUM_JOINTS, 3, 3) of one instant -> primitives."""
        axes = rotations[self.ell_joint]
        centres = joints[self.ell_joint] + np.einsum("eij,ej->ei", axes, self.ell_offset)
        cap_a = joints[self.cap_from].copy()
        # the belly starts 60 mm above the hip joint so that it never pokes out below the pelvis
        cap_a[-1] = joints[J["hip"]] + rotations[J["hip"]] @ np.array([0.0, 0.0, 60.0])
        return BodyFrame(cap_a, joints[self.cap_to], centres, axes, joints[self.shadow_from], joints[self.shadow_to])


# ---------------------------------------------------------------- one camera


def _box_down(a: np.ndarray, s: int) -> np.ndarray:
    """Mean over s x s blocks of the first two axes (sums of strided views: faster than reshape + mean)."""
    out = a[0::s, 0::s].copy()
    for i in range(s):
        for j in range(s):
            if i or j:
                out += a[i::s, j::s]
    out *= np.float32(1.0 / (s * s))
    return out


@dataclass
class Layer:
    """The rendered person in a window of the image: premultiplied colour and coverage."""

    x0: int
    y0: int
    rgb: np.ndarray  # (h, w, 3) float32, colour times coverage
    alpha: np.ndarray  # (h, w) float32 coverage 0..1

    @property
    def window(self) -> tuple[slice, slice]:
        h, w = self.alpha.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


class CameraRenderer:
    """Everything one camera needs, computed once: sample rays, background, floor map, light direction."""

    def __init__(self, camera: Camera, room: Room, supersample: int = 2, shadows: bool = True):
        self.camera, self.ss, self.shadows = camera, supersample, shadows
        x, y = pixel_rays(camera, supersample)
        self.rx, self.ry = x.astype(np.float32), y.astype(np.float32)
        self.rdd = self.rx * self.rx + self.ry * self.ry + np.float32(1)
        bg = render_background(room, camera)
        self.background, self.floor_xy = bg.image, bg.floor_xy
        self.light = camera.R @ LIGHT
        self.f = float(camera.K[0, 0])

    # -------------------------------------------------- the person

    def render_person(self, body: Body, bf: BodyFrame) -> Layer | None:
        """Ray-cast the body; None when it is entirely outside the image."""
        cam = self.camera
        R, t = cam.R, cam.t
        ca, cb = bf.cap_a @ R.T + t, bf.cap_b @ R.T + t
        ec = bf.ell_centre @ R.T + t
        ea = R @ bf.ell_axes  # (Ne, 3, 3): columns are the local axes in camera coordinates
        pts = np.concatenate([ca, cb, ec])
        if pts[:, 2].min() < 200:  # too close to (or behind) the camera: not a view we render
            return None
        px = project(pts, cam.K, cam.dist, cam.model)
        rad = np.concatenate([body.cap_radius, body.cap_radius, body.ell_radii.max(1)])
        margin = rad * self.f / pts[:, 2] * 1.35 + 1.0
        nc = len(ca)
        lo = np.minimum(px[:nc], px[nc:2 * nc]) - np.maximum(margin[:nc], margin[nc:2 * nc])[:, None]
        hi = np.maximum(px[:nc], px[nc:2 * nc]) + np.maximum(margin[:nc], margin[nc:2 * nc])[:, None]
        lo = np.concatenate([lo, px[2 * nc:] - margin[2 * nc:, None]])
        hi = np.concatenate([hi, px[2 * nc:] + margin[2 * nc:, None]])
        W, H = cam.size
        X0, Y0 = max(int(np.floor(lo[:, 0].min() + 0.5)), 0), max(int(np.floor(lo[:, 1].min() + 0.5)), 0)
        X1, Y1 = min(int(np.ceil(hi[:, 0].max() + 0.5)), W), min(int(np.ceil(hi[:, 1].max() + 0.5)), H)
        if X1 <= X0 or Y1 <= Y0:
            return None
        s = self.ss
        # sample-grid bounds of every primitive, relative to the window
        slo = np.floor((lo + 0.5) * s).astype(int) - np.array([X0 * s, Y0 * s])
        shi = np.ceil((hi + 0.5) * s).astype(int) - np.array([X0 * s, Y0 * s])
        hs, ws = (Y1 - Y0) * s, (X1 - X0) * s
        slo, shi = np.clip(slo, 0, [ws, hs]), np.clip(shi, 0, [ws, hs])
        gx = self.rx[Y0 * s:Y1 * s, X0 * s:X1 * s]
        gy = self.ry[Y0 * s:Y1 * s, X0 * s:X1 * s]
        gdd = self.rdd[Y0 * s:Y1 * s, X0 * s:X1 * s]
        depth = np.full((hs, ws), np.inf, np.float32)
        colour = np.zeros((hs, ws, 3), np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            for k in range(nc):
                self._capsule(ca[k], cb[k], float(body.cap_radius[k]), body.cap_mats[k],
                              slo[k], shi[k], gx, gy, gdd, depth, colour)
            for k in range(len(ec)):
                i = nc + k
                self._ellipsoid(ec[k], ea[k], body.ell_radii[k], body.ell_mats[k],
                                slo[i], shi[i], gx, gy, gdd, depth, colour)
        return Layer(X0, Y0, _box_down(colour, s), _box_down(np.isfinite(depth).astype(np.float32), s))

    def _shade(self, base, normal, dx, dy, dd):
        """base (N, 3) colours, normal (N, 3) unit normals, rays (dx, dy, 1) with squared length dd."""
        lam = np.maximum(normal @ self.light.astype(np.float32), 0)
        head = np.maximum(-(normal[:, 0] * dx + normal[:, 1] * dy + normal[:, 2]) / np.sqrt(dd), 0)
        return base * (0.36 + 0.52 * lam + 0.22 * head)[:, None]

    def _capsule(self, A, B, r, mat, lo, hi, gx, gy, gdd, depth, colour):
        sl = (slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        x, y, dd = gx[sl], gy[sl], gdd[sl]
        if x.size == 0:
            return
        Ax, Ay, Az = (float(v) for v in A)
        Bx, By, Bz = (float(v) for v in B)
        axis = np.asarray(B, float) - A
        L = float(np.linalg.norm(axis))
        ux, uy, uz = (float(v) for v in axis / max(L, 1e-9))
        baoa = -(ux * Ax + uy * Ay + uz * Az)
        bard = ux * x + uy * y + uz
        rdoa = -(Ax * x + Ay * y + Az)
        a = dd - bard * bard
        b = rdoa - baoa * bard
        c = (Ax * Ax + Ay * Ay + Az * Az) - baoa * baoa - r * r
        tc = (-b - np.sqrt(b * b - a * c)) / a
        ax_pos = baoa + tc * bard  # position of the hit along the axis, mm from A
        body_hit = (ax_pos >= 0) & (ax_pos <= L)
        # outside the cylinder's span: the sphere at the nearer end
        at_b = ax_pos > L
        rdob = -(Bx * x + By * y + Bz)
        b2 = np.where(at_b, rdob, rdoa)
        c2 = np.where(at_b, Bx * Bx + By * By + Bz * Bz - r * r, Ax * Ax + Ay * Ay + Az * Az - r * r)
        ts = (-b2 - np.sqrt(b2 * b2 - dd * c2)) / dd
        tt = np.where(body_hit, tc, ts)
        dsl = depth[sl]
        win = tt < dsl  # NaN (missed) compares False
        if not win.any():
            return
        t = tt[win]
        dx, dy, d2 = x[win], y[win], dd[win]
        p = np.stack([t * dx, t * dy, t], -1)
        s = np.clip((p[:, 0] - Ax) * ux + (p[:, 1] - Ay) * uy + (p[:, 2] - Az) * uz, 0, L)
        q = np.stack([Ax + s * ux, Ay + s * uy, Az + s * uz], -1)
        n = (p - q) / np.float32(r)
        dsl[win] = t
        colour[sl][win] = self._shade(mat.capsule(s), n, dx, dy, d2)

    def _ellipsoid(self, centre, axes, radii, mat, lo, hi, gx, gy, gdd, depth, colour):
        sl = (slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        x, y, dd = gx[sl], gy[sl], gdd[sl]
        if x.size == 0:
            return
        M = axes.T / radii[:, None]  # camera -> unit-sphere coordinates (rows: local axes / radius)
        o = M @ (-np.asarray(centre, float))
        m = [[float(v) for v in row] for row in M]
        d0 = m[0][0] * x + m[0][1] * y + m[0][2]
        d1 = m[1][0] * x + m[1][1] * y + m[1][2]
        d2 = m[2][0] * x + m[2][1] * y + m[2][2]
        o0, o1, o2 = (float(v) for v in o)
        a = d0 * d0 + d1 * d1 + d2 * d2
        b = o0 * d0 + o1 * d1 + o2 * d2
        c = o0 * o0 + o1 * o1 + o2 * o2 - 1.0
        tt = (-b - np.sqrt(b * b - a * c)) / a
        dsl = depth[sl]
        win = tt < dsl
        if not win.any():
            return
        t = tt[win]
        u = np.stack([o0 + t * d0[win], o1 + t * d1[win], o2 + t * d2[win]], -1)
        n = (u / radii.astype(np.float32)) @ axes.T.astype(np.float32)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        dsl[win] = t
        colour[sl][win] = self._shade(mat.ellipsoid(u), n, x[win], y[win], dd[win])

    # -------------------------------------------------- the shadow

    def shadow(self, body: Body, bf: BodyFrame, strength: float = 0.45, softness: float = 90.0):
        """(window, factor) darkening the floor under the person along the light, or None."""
        shift = -np.array([LIGHT[0], LIGHT[1]]) / LIGHT[2]  # floor offset per mm of height
        a = bf.shadow_a[:, :2] + bf.shadow_a[:, 2:] * shift
        b = bf.shadow_b[:, :2] + bf.shadow_b[:, 2:] * shift
        reach = body.shadow_width.max() + 3 * softness
        lo, hi = np.minimum(a, b).min(0) - reach, np.maximum(a, b).max(0) + reach
        corners = np.array([[lo[0], lo[1], 0], [hi[0], lo[1], 0], [lo[0], hi[1], 0], [hi[0], hi[1], 0]])
        cc = corners @ self.camera.R.T + self.camera.t
        if cc[:, 2].min() < 200:
            return None
        px = project(cc, self.camera.K, self.camera.dist, self.camera.model)
        W, H = self.camera.size
        x0, y0 = max(int(np.floor(px[:, 0].min())) - 2, 0), max(int(np.floor(px[:, 1].min())) - 2, 0)
        x1, y1 = min(int(np.ceil(px[:, 0].max())) + 3, W), min(int(np.ceil(px[:, 1].max())) + 3, H)
        if x1 <= x0 or y1 <= y0:
            return None
        fxy = self.floor_xy[y0:y1, x0:x1]
        px_, py_ = fxy[..., 0], fxy[..., 1]
        gap = np.full(px_.shape, np.inf, np.float32)
        for k in range(len(a)):
            ax_, ay_ = float(a[k, 0]), float(a[k, 1])
            ex, ey = float(b[k, 0] - a[k, 0]), float(b[k, 1] - a[k, 1])
            ee = max(ex * ex + ey * ey, 1e-6)
            rx, ry = px_ - ax_, py_ - ay_
            s = np.clip((rx * ex + ry * ey) / ee, 0, 1)
            dist = np.sqrt((rx - s * ex) ** 2 + (ry - s * ey) ** 2) - float(body.shadow_width[k])
            np.minimum(gap, dist, out=gap)
        gap = np.maximum(gap, 0)
        factor = 1 - strength * np.exp(-gap * gap / (2 * softness * softness))
        factor = np.where(np.isnan(factor), 1, factor).astype(np.float32)  # NaN: not floor
        return (slice(y0, y1), slice(x0, x1)), factor

    # -------------------------------------------------- a whole frame

    def render(self, body: Body, bf: BodyFrame, gain: float = 1.0, noise: np.ndarray | None = None,
               others: tuple[tuple[Body, BodyFrame], ...] = ()) -> tuple[np.ndarray, np.ndarray]:
        """The frame (H, W, 3) uint8 and the person's mask (H, W) bool (coverage >= 1/2). ``others``: bystanders,
        drawn too (far to near, whole persons: people do not interpenetrate), in no mask; one nearer than the person
        hides the part of the person's mask it covers."""
        frame = self.background * np.float32(gain)
        people = ((body, bf), *others)
        if self.shadows:
            for b, f in people:
                sh = self.shadow(b, f)
                if sh is not None:
                    win, factor = sh
                    frame[win] *= factor[..., None]
        W, H = self.camera.size
        mask = np.zeros((H, W), bool)
        depth = [float((f.ell_centre.mean(0) @ self.camera.R.T + self.camera.t)[2]) for _, f in people]
        for k in sorted(range(len(people)), key=lambda k: -depth[k]):
            layer = self.render_person(*people[k])
            if layer is None:
                continue
            win = layer.window
            frame[win] = frame[win] * (1 - layer.alpha[..., None]) + layer.rgb * np.float32(gain)
            if k == 0:
                mask[win] = layer.alpha >= 0.5
            else:  # nearer than the person (drawn after it): hides it
                mask[win] &= layer.alpha < 0.5
        if noise is not None:
            frame += noise
        np.clip(frame, 0, 255, out=frame)
        return frame.astype(np.uint8), mask
