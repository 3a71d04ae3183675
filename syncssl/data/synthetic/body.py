"""Synthetic subjects: bone lengths, limb thickness and clothing, and the forward kinematics of their skeleton.

The skeleton is Human3.6M's 17 joints (``H36M17``) plus four helper points that only the renderer uses
(toes and hands). Angles are local rotations of each joint in its parent's frame; the body frame is
x forward, y left, z up, and the rest pose stands upright with the arms hanging. Forward kinematics only
rotates fixed bone vectors, so every bone keeps its length exactly in every frame.

Clothing is left/right asymmetric on purpose (one sleeve in an accent colour, stripes on one trouser leg,
a logo on one side of the chest, sometimes a bag strap over one shoulder), so that a mirrored image is
visibly different from a real one. Which side each of these is on, and the dominant hand, are drawn per
*sequence* (:func:`with_sides`), not per subject: a fixed side would let a network tell a mirrored view of a
known subject by memorising that subject's habits instead of reasoning about the pose.

Every subject, training, held-out or of the unlabelled pool, is drawn from one distribution (clothing colours
from a continuous range of hues, saturations and brightnesses, skin, hair, build, sleeves, a bag): an unseen
subject is a new draw from the distribution the network learned from, as a new person is in a real rig.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ...geometry import H36M17

# ---------------------------------------------------------------- the extended skeleton

#: The 17 Human3.6M joints, then the renderer's helper points.
JOINT_NAMES = H36M17.names + ("r_toe", "l_toe", "r_hand", "l_hand")
PARENTS = H36M17.parents + (3, 6, 16, 13)
NUM_JOINTS = len(JOINT_NAMES)
J = {name: i for i, name in enumerate(JOINT_NAMES)}

# Rest-pose bone vectors of an average adult (mm), each in its parent's frame (x forward, y left, z up).
# Lengths follow Human3.6M's mean skeleton.
_REST_OFFSETS = {
    "r_hip": (0, -130, 0), "r_knee": (0, 0, -440), "r_foot": (0, 0, -440),
    "l_hip": (0, 130, 0), "l_knee": (0, 0, -440), "l_foot": (0, 0, -440),
    "spine": (0, 0, 230), "thorax": (0, 0, 255), "neck": (20, 0, 115), "head": (-5, 0, 115),
    "l_shoulder": (0, 150, -10), "l_elbow": (0, 0, -280), "l_wrist": (0, 0, -250),
    "r_shoulder": (0, -150, -10), "r_elbow": (0, 0, -280), "r_wrist": (0, 0, -250),
    "r_toe": (140, 0, -50), "l_toe": (140, 0, -50), "r_hand": (0, 0, -80), "l_hand": (0, 0, -80),
}
# Bones scaled together (one random factor per group and subject); left and right stay equal.
_BONE_GROUPS = {
    "hip_width": ("r_hip", "l_hip"), "thigh": ("r_knee", "l_knee"), "shin": ("r_foot", "l_foot"),
    "spine": ("spine", "thorax"), "neck": ("neck", "head"), "shoulder_width": ("l_shoulder", "r_shoulder"),
    "upper_arm": ("l_elbow", "r_elbow"), "forearm": ("l_wrist", "r_wrist"),
    "foot": ("r_toe", "l_toe"), "hand": ("r_hand", "l_hand"),
}
ANKLE_HEIGHT = 80.0  # mm above the floor for an average adult standing upright

# ---------------------------------------------------------------- clothing colours


def clothing_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A garment's colour: any hue, saturation 0.05..0.9, brightness 0.15..0.95 (from near-black and greys to
    vivid colours and near-white), the same distribution for every subject."""
    import colorsys
    h, sat, v = rng.random(), rng.uniform(0.05, 0.9), rng.uniform(0.15, 0.95)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, sat, v))


SKIN_TONES = ((240, 200, 170), (215, 165, 130), (175, 125, 90), (125, 85, 60), (90, 60, 45))
HAIR_COLOURS = ((30, 20, 15), (85, 55, 30), (165, 125, 65), (70, 70, 70))

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class Look:
    """What a subject wears. Sides are "left" or "right" (the subject's own left and right)."""

    skin: Colour
    hair: Colour
    shirt: Colour  # torso and sleeves
    trousers: Colour  # pelvis and legs
    shoes: Colour
    long_sleeves: bool  # False: forearms show skin
    accent: Colour  # the odd sleeve's colour
    accent_sleeve: str  # which sleeve is in the accent colour
    stripes: Colour  # colour of the stripes on one trouser leg
    striped_leg: str  # which trouser leg is striped
    logo: Colour  # a round logo on one side of the chest
    logo_side: str
    strap: Colour | None  # a bag strap from one shoulder across the chest and back (None: no bag)
    strap_shoulder: str  # the shoulder the strap hangs from

    def clothing_colours(self) -> set[Colour]:
        """Every clothing colour (skin and hair excluded)."""
        cols = {self.shirt, self.trousers, self.shoes, self.accent, self.stripes, self.logo}
        return cols | ({self.strap} if self.strap is not None else set())


@dataclass(frozen=True, eq=False)
class Subject:
    """One synthetic person: body proportions, thickness, clothing, handedness."""

    name: str  # Human3.6M-style name, e.g. "S1"
    split: str  # "train", "test", "val" or "pool" (unlabelled pre-training subjects): a name only, the look does not
    #             depend on it
    offsets: np.ndarray  # (NUM_JOINTS, 3) rest bone vectors in the parent's frame, mm (row 0 unused)
    radii: dict  # primitive name -> radius (capsules, mm) or (3,) radii (ellipsoids, mm)
    look: Look
    handedness: str  # "right" or "left": the side that waves, throws the cross, reaches down
    ankle_height: float  # mm, ankle joint above the floor when standing

    @property
    def leg_length(self) -> float:
        """Hip joint to ankle, mm."""
        return float(np.linalg.norm(self.offsets[J["l_knee"]]) + np.linalg.norm(self.offsets[J["l_foot"]]))

    def bone_lengths(self) -> np.ndarray:
        """(16,) lengths of the 17-joint skeleton's bones, in ``H36M17.bones`` order."""
        return np.array([np.linalg.norm(self.offsets[c]) for _, c in H36M17.bones])


def stable_hash(text: str) -> int:
    """A hash of ``text`` that is the same in every process (Python's ``hash`` is salted per process)."""
    return zlib.crc32(text.encode())


def subject_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, stable_hash("subject"), stable_hash(name)])


def make_subject(name: str, split: str, seed: int) -> Subject:
    """The subject ``name`` of the dataset made with ``seed``: same arguments, same subject."""
    if split not in ("train", "test", "pool", "val"):
        raise ValueError(f"subject {name}: split must be 'train', 'test', 'pool' or 'val', got {split!r}")
    rng = subject_rng(seed, name)
    # Proportions: one overall scale and one factor per bone group: about +-10% per bone in total.
    scale = rng.uniform(0.93, 1.07)
    offsets = np.zeros((NUM_JOINTS, 3))
    group_of = {bone: g for g, bones in _BONE_GROUPS.items() for bone in bones}
    factors = {g: rng.uniform(0.95, 1.05) for g in _BONE_GROUPS}
    for bone, vec in _REST_OFFSETS.items():
        offsets[J[bone]] = np.asarray(vec, float) * scale * factors.get(group_of.get(bone), 1.0)
    # Thickness: limbs and torso vary independently (slim .. heavy build).
    limb, trunk = rng.uniform(0.85, 1.2), rng.uniform(0.85, 1.2)
    hip_half_width = abs(offsets[J["l_hip"]][1])
    radii = {
        "thigh": 68 * limb, "shin": 50 * limb, "foot": 36 * limb, "upper_arm": 44 * limb,
        "forearm": 36 * limb, "hand": 40 * limb, "neck": 46 * scale,
        # ellipsoids: (forward, sideways, up) half-axes
        "pelvis": np.array([115 * trunk, max(170 * trunk, hip_half_width + 45), 150 * scale]),
        "belly": 105 * trunk,
        "chest": np.array([120 * trunk, 175 * trunk, 0.5 * offsets[J["thorax"]][2] + 65 * scale]),
        "head": np.array([100, 85, 115]) * scale,
    }
    shirt, trousers, shoes, accent, stripes, logo, strap = (clothing_colour(rng) for _ in range(7))
    side = lambda: "left" if rng.random() < 0.5 else "right"  # noqa: E731
    look = Look(
        skin=SKIN_TONES[rng.integers(len(SKIN_TONES))], hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))],
        shirt=shirt, trousers=trousers, shoes=shoes, long_sleeves=bool(rng.random() < 0.6),
        accent=accent, accent_sleeve=side(), stripes=stripes, striped_leg=side(), logo=logo, logo_side=side(),
        strap=strap if rng.random() < 0.5 else None, strap_shoulder=side(),
    )
    return Subject(name=name, split=split, offsets=offsets, radii=radii, look=look,
                   handedness="left" if rng.random() < 0.15 else "right", ankle_height=ANKLE_HEIGHT * scale)


def with_sides(subject: Subject, rng: np.random.Generator) -> Subject:
    """The subject with the sides of its asymmetric clothing and its dominant hand drawn again (per sequence)."""
    from dataclasses import replace
    side = lambda: "left" if rng.random() < 0.5 else "right"  # noqa: E731
    look = replace(subject.look, accent_sleeve=side(), striped_leg=side(), logo_side=side(), strap_shoulder=side())
    return replace(subject, look=look, handedness="left" if rng.random() < 0.5 else "right")


# ---------------------------------------------------------------- forward kinematics


def euler(angles_deg: np.ndarray) -> np.ndarray:
    """(..., 3) angles (rx, ry, rz) in degrees -> (..., 3, 3) rotations ``Rz @ Ry @ Rx`` (x applied first)."""
    a = np.deg2rad(np.asarray(angles_deg, np.float64))
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    return np.stack([
        np.stack([cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx], -1),
        np.stack([sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx], -1),
        np.stack([-sy, cy * sx, cy * cx], -1),
    ], -2)


def forward_kinematics(offsets: np.ndarray, root_position: np.ndarray, root_rotation: np.ndarray,
                       local_rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions and global rotations.

    offsets (NUM_JOINTS, 3); root_position (T, 3); root_rotation (T, 3, 3); local_rotations
    (T, NUM_JOINTS, 3, 3) (row 0 ignored: the root's rotation is ``root_rotation``).
    Returns positions (T, NUM_JOINTS, 3) and global rotations (T, NUM_JOINTS, 3, 3); a joint's global
    rotation orients the bones to its children.
    """
    T = root_position.shape[0]
    if root_position.shape != (T, 3) or root_rotation.shape != (T, 3, 3) or \
            local_rotations.shape != (T, NUM_JOINTS, 3, 3) or offsets.shape != (NUM_JOINTS, 3):
        raise ValueError("forward_kinematics: shapes do not match (T, 3), (T, 3, 3), (T, J, 3, 3), (J, 3)")
    pos = np.empty((T, NUM_JOINTS, 3))
    rot = np.empty((T, NUM_JOINTS, 3, 3))
    pos[:, 0], rot[:, 0] = root_position, root_rotation
    for j in range(1, NUM_JOINTS):
        p = PARENTS[j]
        pos[:, j] = pos[:, p] + rot[:, p] @ offsets[j]
        rot[:, j] = rot[:, p] @ local_rotations[:, j]
    return pos, rot
