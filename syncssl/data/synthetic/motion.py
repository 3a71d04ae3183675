"""Procedural actions: joint angles over time, turned into joint positions by forward kinematics.

A sequence is built in layers on a continuous "motion clock":

- a *plan*: where the person stands or walks (root path in the capture area), where they face, and when
  they perform the action (``act`` envelope) and when they relocate between spots (walking);
- a *gait* layer (legs and arm swing), weighted by how fast the root moves or turns, its cadence tied to
  the speed so that the stance foot roughly stays put;
- an *action* layer (waving, squatting, ...), weighted by the ``act`` envelope;
- *holds*: the clock stops for a while (the person freezes), giving runs of frames without movement, as
  real recordings have (the training sampler is expected to skip them).

Every action is left/right asymmetric (the subject's dominant hand waves, punches with the rear hand,
reaches down; the other arm does something else) and randomised per sequence (tempo, amplitude, phase,
spots, headings, variants). The root height is set each frame so that the lowest foot touches the floor
(z = 0, z up, millimetres); jumps add to it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body import NUM_JOINTS, J, Subject, euler, forward_kinematics

#: The action types, in a fixed order (presets assign them to subjects by index).
ACTIONS = ("Walking", "Waving", "Squatting", "JumpingJacks", "Punching", "Bending", "Turning", "ArmCircles")


@dataclass
class Motion:
    """One animated sequence."""

    joints: np.ndarray  # (T, NUM_JOINTS, 3) world positions, mm (the first 17 are H36M17)
    rotations: np.ndarray  # (T, NUM_JOINTS, 3, 3) global joint rotations (orient the body parts)
    still: np.ndarray  # (T,) bool: the frame repeats the previous one (inside a hold)

    @property
    def num_frames(self) -> int:
        return self.joints.shape[0]


def animate(subject: Subject, action: str, num_frames: int, fps: float, rng: np.random.Generator,
            area_radius: float = 1300.0) -> Motion:
    """``num_frames`` frames of ``subject`` performing ``action`` inside a disc of ``area_radius`` mm."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    if num_frames < 2:
        raise ValueError(f"a sequence needs at least 2 frames, got {num_frames}")
    hold_index, still = _holds(num_frames, fps, rng)
    M = int(hold_index[-1]) + 1  # frames of continuous motion
    dt = 1.0 / fps
    tempo = rng.uniform(0.8, 1.25)  # scales every frequency of this sequence
    amp = rng.uniform(0.8, 1.1)  # scales the amplitude of the action
    dominant = subject.handedness if rng.random() < 0.85 else _other(subject.handedness)

    plan = _walk_plan(M, dt, rng, area_radius) if action == "Walking" else _spots_plan(M, dt, rng, area_radius)
    layer = _ACTION_LAYERS[action](plan.act_time, dt, rng, tempo, amp, dominant)
    heading = _smooth(np.unwrap(plan.heading + layer.turn * plan.act_active), 0.25 / dt)

    speed = np.linalg.norm(np.gradient(plan.root_xy, dt, axis=0), axis=-1)
    turn_rate = np.abs(np.gradient(heading, dt))
    gait = _gait(subject, speed, turn_rate, dt, rng, layer.arm_swing)

    angles = gait.angles + plan.act[:, None, None] * layer.angles + _look_around(M, dt, rng)
    pitch = plan.act * layer.pitch
    # Pitching the pelvis forward would swing the legs back: flex the hips by as much to keep them vertical.
    for hip in (J["l_hip"], J["r_hip"]):
        angles[:, hip, 1] -= pitch
    root_rotation = euler(np.stack([np.zeros(M), pitch, np.rad2deg(heading)], -1))
    local = euler(angles)
    root = np.concatenate([plan.root_xy, np.zeros((M, 1))], -1)
    joints, rotations = forward_kinematics(subject.offsets, root, root_rotation, local)

    # Stand on the floor: the lowest heel (ankle minus ankle height) or toe (minus foot radius) at z = 0.
    heels = joints[:, [J["l_foot"], J["r_foot"]], 2] - subject.ankle_height
    toes = joints[:, [J["l_toe"], J["r_toe"]], 2] - subject.radii["foot"]
    lift = -np.minimum(heels.min(1), toes.min(1)) + plan.act * layer.jump
    joints[:, :, 2] += lift[:, None]
    return Motion(joints[hold_index], rotations[hold_index], still)


# ---------------------------------------------------------------- holds


def _holds(T: int, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which motion frame each output frame shows, and which frames repeat their predecessor.

    0 to 2 holds of 0.4..1.2 s, at most a quarter of the sequence, never at the very start.
    """
    counts = np.ones(T, np.int64)
    budget = T // 4
    for _ in range(rng.integers(0, 3)):
        length = min(int(round(rng.uniform(0.4, 1.2) * fps)), budget)
        if length < 3:
            break
        budget -= length
        at = int(rng.integers(max(1, T // 10), max(2, (9 * T) // 10)))
        counts[at] += length
    # Trim the motion frames at the end so that the total is exactly T.
    total, m = 0, 0
    while total < T:
        total += counts[m]
        m += 1
    counts = counts[:m]
    counts[-1] -= total - T
    index = np.repeat(np.arange(m), counts)
    still = np.zeros(T, bool)
    still[1:] = index[1:] == index[:-1]
    return index, still


# ---------------------------------------------------------------- plans: where to be, where to face


@dataclass
class _Plan:
    root_xy: np.ndarray  # (M, 2) mm
    heading: np.ndarray  # (M,) radians, unsmoothed target (forward = (cos, sin))
    act: np.ndarray  # (M,) 0..1 smoothed "performing the action" envelope
    act_active: np.ndarray  # (M,) 0/1 unsmoothed
    act_time: np.ndarray  # (M,) seconds spent performing so far: the action layer's clock


def _random_spot(rng, radius: float) -> np.ndarray:
    r, a = radius * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
    return np.array([r * np.cos(a), r * np.sin(a)])


def _spot_away(rng, radius: float, frm: np.ndarray, min_dist: float) -> np.ndarray:
    best = _random_spot(rng, radius)
    for _ in range(20):
        if np.linalg.norm(best - frm) >= min_dist:
            break
        best = _random_spot(rng, radius)
    return best


def _spots_plan(M: int, dt: float, rng, radius: float) -> _Plan:
    """Perform at a spot, walk to another spot, perform, ... (segments scale with the sequence)."""
    duration = M * dt
    xy = np.empty((M, 2))
    heading = np.empty(M)
    active = np.zeros(M)
    spot, face = _random_spot(rng, radius * 0.8), rng.uniform(-np.pi, np.pi)
    t, acting = 0, rng.random() < 0.7
    while t < M:
        if acting:
            n = max(2, int(min(rng.uniform(2.2, 3.6), 0.5 * duration) / dt))
            sl = slice(t, min(M, t + n))
            xy[sl], heading[sl], active[sl] = spot, face, 1.0
        else:
            target = _spot_away(rng, radius, spot, 0.6 * radius)
            dist = np.linalg.norm(target - spot)
            n = max(2, int((dist / rng.uniform(800, 1200) + 0.6) / dt))
            u = _smoothstep(np.linspace(0, 1, n))
            sl = slice(t, min(M, t + n))
            k = sl.stop - sl.start
            xy[sl] = spot + (target - spot) * u[:k, None]
            heading[sl] = np.arctan2(*(target - spot)[::-1])
            spot, face = target, rng.uniform(-np.pi, np.pi)
        t += n
        acting = not acting
    heading = np.unwrap(heading)  # each change of heading the short way round
    return _Plan(xy, heading, np.clip(_smooth(active, 0.2 / dt), 0, 1), active, np.cumsum(active) * dt)


def _walk_plan(M: int, dt: float, rng, radius: float) -> _Plan:
    """Walk along a smooth path through random waypoints, slowing to a stop now and then."""
    tau = np.arange(M) * dt
    v0 = rng.uniform(900, 1400)
    slow = np.zeros(M)
    for _ in range(rng.integers(0, 1 + int(M * dt / 3.0))):  # about one stop per 3 s at most
        at = rng.uniform(0.25, 0.75) * M * dt
        slow = np.maximum(slow, np.clip(1.6 * np.exp(-((tau - at) / 0.6) ** 2), 0, 1))
    v = v0 * (1 - slow)
    s = np.concatenate([[0.0], np.cumsum(v[:-1]) * dt])
    path = _catmull_rom_path(rng, radius * 0.85, length=s[-1] + 1000.0)
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    xy = np.stack([np.interp(s, arc, path[:, 0]), np.interp(s, arc, path[:, 1])], -1)
    k = np.clip(np.searchsorted(arc, s, side="right") - 1, 0, len(seg) - 1)
    direction = path[k + 1] - path[k]
    heading = np.unwrap(np.arctan2(direction[:, 1], direction[:, 0]))
    ones = np.ones(M)
    return _Plan(xy, heading, ones, ones, tau)


def _catmull_rom_path(rng, radius: float, length: float, samples: int = 24) -> np.ndarray:
    """A smooth polyline through random waypoints, at least ``length`` mm long."""
    points = [_random_spot(rng, radius)]
    total = 0.0
    while total < length or len(points) < 3:
        points.append(_spot_away(rng, radius, points[-1], 0.9 * radius))
        total += np.linalg.norm(points[-1] - points[-2])
    P = np.array([2 * points[0] - points[1]] + points + [2 * points[-1] - points[-2]])
    u = np.linspace(0, 1, samples, endpoint=False)[:, None]
    out = []
    for i in range(1, len(P) - 2):
        p0, p1, p2, p3 = P[i - 1], P[i], P[i + 1], P[i + 2]
        out.append(0.5 * (2 * p1 + (p2 - p0) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u ** 2
                          + (3 * p1 - p0 - 3 * p2 + p3) * u ** 3))
    out.append(P[-2][None])
    return np.concatenate(out)


# ---------------------------------------------------------------- gait


@dataclass
class _Gait:
    angles: np.ndarray  # (M, NUM_JOINTS, 3) degrees


def _gait(subject: Subject, speed: np.ndarray, turn_rate: np.ndarray, dt: float, rng,
          arm_swing: tuple[float, float]) -> _Gait:
    """Legs stepping and arms swinging, as strong as the root moves (or turns in place).

    Cadence follows the speed (stride ~ 4 * leg * sin(hip amplitude)) so that the stance foot roughly stays
    put; below 0.7 m/s the steps shorten instead of slowing down.
    """
    M = speed.shape[0]
    hip_amp = rng.uniform(20, 28)
    stride = 4 * subject.leg_length * np.sin(np.deg2rad(hip_amp))
    w_walk = np.clip(speed / 700.0, 0, 1)
    w_turn = np.clip(turn_rate / 1.2, 0, 1)
    w = np.maximum(w_walk, w_turn)
    rate = np.maximum(speed / np.maximum(stride * w_walk, 1.0) * (w_walk > 0.01), 0.9 * w_turn)
    phase = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.cumsum(rate) * dt
    a = np.zeros((M, NUM_JOINTS, 3))
    knee_amp = rng.uniform(45, 60)
    swing = rng.uniform(18, 30)
    for side, ph in (("r", phase), ("l", phase + np.pi)):
        sgn = 1 if side == "l" else -1
        a[:, J[f"{side}_hip"], 1] = -w * hip_amp * np.sin(ph)
        a[:, J[f"{side}_knee"], 1] = w * (5 + knee_amp * np.maximum(0, np.cos(ph + 0.4)) ** 2)
        scale = arm_swing[0] if side == "l" else arm_swing[1]
        a[:, J[f"{side}_shoulder"], 1] = w * scale * swing * np.sin(ph)  # opposite to the same-side leg
        a[:, J[f"{side}_shoulder"], 0] = sgn * 6  # arms hang slightly away from the body
        a[:, J[f"{side}_elbow"], 1] = -(12 + w * scale * 10 * (1 + np.sin(ph)))
    a[:, J["thorax"], 2] = -w * 5 * np.sin(phase)  # shoulders counter-rotate against the pelvis
    return _Gait(a)


def _look_around(M: int, dt: float, rng) -> np.ndarray:
    """Slow, small head turns and nods: people never hold their head perfectly still."""
    t = np.arange(M) * dt
    a = np.zeros((M, NUM_JOINTS, 3))
    a[:, J["neck"], 2] = 12 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 2 * np.pi))
    a[:, J["neck"], 1] = 5 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 2 * np.pi))
    return a


# ---------------------------------------------------------------- action layers


@dataclass
class _Layer:
    angles: np.ndarray  # (M, NUM_JOINTS, 3) degrees, added with the act envelope as weight
    pitch: np.ndarray | float = 0.0  # pelvis forward pitch, degrees (the hips compensate)
    jump: np.ndarray | float = 0.0  # mm above the floor
    turn: np.ndarray | float = 0.0  # heading offset while acting, radians
    arm_swing: tuple[float, float] = (1.0, 1.0)  # gait arm swing of the (left, right) arm


def _other(side: str) -> str:
    return "left" if side == "right" else "right"


def _sgn(side: str) -> int:
    """+1 for the subject's left, -1 for the right: abduction / outward rotation mirror with the side."""
    return 1 if side == "left" else -1


def _arm(a: np.ndarray, side: str, flex=0.0, abd=0.0, out=0.0, elbow=0.0):
    """Shoulder flexion (forward raise), abduction (sideways raise), outward swing, elbow flexion; degrees."""
    s, c = _sgn(side), side[0]
    a[:, J[f"{c}_shoulder"], 0] += s * np.asarray(abd)
    a[:, J[f"{c}_shoulder"], 1] += -np.asarray(flex)
    a[:, J[f"{c}_shoulder"], 2] += s * np.asarray(out)
    a[:, J[f"{c}_elbow"], 1] += -np.asarray(elbow)


def _leg(a: np.ndarray, side: str, flex=0.0, abd=0.0, knee=0.0):
    s, c = _sgn(side), side[0]
    a[:, J[f"{c}_hip"], 0] += s * np.asarray(abd)
    a[:, J[f"{c}_hip"], 1] += -np.asarray(flex)
    a[:, J[f"{c}_knee"], 1] += np.asarray(knee)


def _hand_on_hip(a: np.ndarray, side: str):
    _arm(a, side, flex=-15, abd=45, out=-10, elbow=100)


def _plateau(x: np.ndarray, width: float = 0.7) -> np.ndarray:
    """A 0..1 cycle (cosine) with flat top and bottom: pauses at the ends of a movement."""
    c = 0.5 - 0.5 * np.cos(x)
    return _smoothstep(np.clip((c - (1 - width) / 2) / width, 0, 1))


def _walking(t, dt, rng, tempo, amp, dom) -> _Layer:
    a = np.zeros((t.size, NUM_JOINTS, 3))
    swing = [1.0, 1.0]
    variant = rng.integers(3)
    i_dom = 0 if dom == "left" else 1
    if variant == 0:  # holding a phone in the dominant hand
        _arm(a, dom, flex=25, elbow=75, out=-10)
        swing[i_dom] = 0.0
    elif variant == 1:  # carrying a bag: the dominant arm hangs stiffly
        _arm(a, dom, abd=8)
        swing[i_dom] = 0.15
    else:  # uneven swing and a slight lean
        swing[1 - i_dom] = rng.uniform(0.3, 0.6)
        a[:, J["spine"], 0] += 4 * _sgn(dom)
    return _Layer(a, arm_swing=tuple(swing))


def _waving(t, dt, rng, tempo, amp, dom) -> _Layer:
    a = np.zeros((t.size, NUM_JOINTS, 3))
    wave = np.sin(2 * np.pi * rng.uniform(1.4, 2.4) * tempo * t + rng.uniform(0, 2 * np.pi))
    _arm(a, dom, flex=15, abd=140 + 14 * amp * wave, elbow=35 + 15 * amp * wave)
    _arm(a, _other(dom), abd=4, flex=5, elbow=15)
    a[:, J["spine"], 0] += 4 * _sgn(dom)  # lean away from the raised arm
    a[:, J["neck"], 2] += 12 * _sgn(dom)  # look towards it
    return _Layer(a, arm_swing=(0.3, 0.3))


def _squatting(t, dt, rng, tempo, amp, dom) -> _Layer:
    a = np.zeros((t.size, NUM_JOINTS, 3))
    d = amp * _plateau(2 * np.pi * t * tempo / rng.uniform(2.2, 3.2) + rng.uniform(0, 2 * np.pi))
    for side in ("left", "right"):
        _leg(a, side, flex=95 * d, abd=8 * d, knee=125 * d)
    a[:, J["spine"], 1] += 20 * d
    a[:, J["thorax"], 1] += 10 * d
    a[:, J["neck"], 1] -= 15 * d
    if rng.random() < 0.5:  # both arms forward for balance, unevenly
        _arm(a, dom, flex=90 * d, elbow=10)
        _arm(a, _other(dom), flex=65 * d, out=12 * d, elbow=25)
    else:  # dominant arm forward, the other hand on the hip
        _arm(a, dom, flex=85 * d, elbow=15)
        _hand_on_hip(a, _other(dom))
    return _Layer(a, arm_swing=(0.2, 0.2))


def _jumping_jacks(t, dt, rng, tempo, amp, dom) -> _Layer:
    a = np.zeros((t.size, NUM_JOINTS, 3))
    theta = 2 * np.pi * t * tempo / rng.uniform(0.9, 1.25) + rng.uniform(0, 2 * np.pi)
    s_dom = 0.5 - 0.5 * np.cos(theta)
    s_other = 0.5 - 0.5 * np.cos(theta - rng.uniform(0.2, 0.5))  # the other arm lags
    _arm(a, dom, abd=15 + 150 * amp * s_dom, elbow=10)
    _arm(a, _other(dom), abd=15 + 130 * amp * s_other, elbow=20)
    airborne = np.abs(np.sin(theta))
    for side in ("left", "right"):
        _leg(a, side, abd=3 + 14 * s_dom, knee=12 * (1 - airborne), flex=6 * (1 - airborne))
    return _Layer(a, jump=70 * amp * airborne, arm_swing=(0.0, 0.0))


def _punching(t, dt, rng, tempo, amp, dom) -> _Layer:
    a = np.zeros((t.size, NUM_JOINTS, 3))
    lead, rear = _other(dom), dom
    _leg(a, lead, flex=15, knee=18)
    _leg(a, rear, flex=-12, knee=18)
    bob = 6 * np.sin(2 * np.pi * 1.2 * tempo * t)
    for side in ("left", "right"):
        a[:, J[f"{side[0]}_knee"], 1] += bob
    # Punches at random times: jabs with the lead hand are more frequent than crosses with the rear hand.
    rate = rng.uniform(1.2, 2.2) * tempo
    times = np.cumsum(rng.exponential(1 / rate, size=int(t.max() * rate * 2) + 4)) + 0.3
    is_lead = rng.random(times.size) < 0.65
    pulses = np.exp(-((t[:, None] - times[None]) / 0.09) ** 2)
    p = {lead: np.clip(pulses[:, is_lead].sum(1), 0, 1), rear: np.clip(pulses[:, ~is_lead].sum(1), 0, 1)}
    for side in (lead, rear):
        _arm(a, side, flex=55 + 33 * p[side], abd=12 - 7 * p[side], out=-25 + 13 * p[side],
             elbow=115 - 107 * p[side])
    a[:, J["spine"], 2] += -20 * _sgn(lead) + 30 * _sgn(lead) * p[rear]  # turned stance; the cross twists
    return _Layer(a, arm_swing=(0.0, 0.0))


def _bending(t, dt, rng, tempo, amp, dom) -> _Layer:
    a = np.zeros((t.size, NUM_JOINTS, 3))
    d = amp * _plateau(2 * np.pi * t * tempo / rng.uniform(3.0, 4.2) + rng.uniform(0, 2 * np.pi), 0.6)
    for side in ("left", "right"):
        _leg(a, side, knee=12 * d)
    a[:, J["spine"], 1] += 30 * d
    a[:, J["thorax"], 1] += 20 * d
    a[:, J["neck"], 1] -= 20 * d
    _arm(a, dom, flex=30 * d, elbow=10)  # reaches down to the floor
    _arm(a, _other(dom), flex=35 * d, out=-10 * d, elbow=35 * d)  # hand towards the knee
    return _Layer(a, pitch=35 * d, arm_swing=(0.0, 0.0))


def _turning(t, dt, rng, tempo, amp, dom) -> _Layer:
    a = np.zeros((t.size, NUM_JOINTS, 3))
    # Turns of 120..300 degrees either way at 120..200 degrees/s, with short pauses between them.
    turn = np.zeros(t.size)
    start, angle = 0.0, 0.0
    while start < t.max() + 1:
        delta = np.deg2rad(rng.uniform(120, 300)) * rng.choice([-1, 1])
        length = abs(np.rad2deg(delta)) / (rng.uniform(120, 200) * tempo)
        turn += delta * _smoothstep(np.clip((t - start) / length, 0, 1))
        start += length + rng.uniform(0.3, 0.8)
        angle += delta
    _hand_on_hip(a, _other(dom))
    _arm(a, dom, abd=50 + 10 * np.sin(2 * np.pi * 0.7 * t), elbow=20)
    i_other = 0 if _other(dom) == "left" else 1
    swing = [1.0, 1.0]
    swing[i_other] = 0.0
    return _Layer(a, turn=turn, arm_swing=tuple(swing))


def _arm_circles(t, dt, rng, tempo, amp, dom) -> _Layer:
    a = np.zeros((t.size, NUM_JOINTS, 3))
    w = 2 * np.pi * rng.uniform(0.8, 1.4) * tempo
    ph = rng.uniform(0, 2 * np.pi)
    if rng.random() < 0.5:  # both arms sideways, circling in opposite directions with different radii
        r_dom, r_other = 30 * amp, 16 * amp
        _arm(a, dom, abd=88 + r_dom * np.sin(w * t + ph), out=r_dom * np.cos(w * t + ph), elbow=5)
        _arm(a, _other(dom), abd=85 + r_other * np.sin(-w * t), out=r_other * np.cos(-w * t), elbow=5)
    else:  # the dominant arm circles in front, the other hand on the hip
        r = 35 * amp
        _arm(a, dom, flex=90 + r * np.sin(w * t + ph), out=r * np.cos(w * t + ph), elbow=5)
        _hand_on_hip(a, _other(dom))
    return _Layer(a, arm_swing=(0.0, 0.0))


_ACTION_LAYERS = {
    "Walking": _walking, "Waving": _waving, "Squatting": _squatting, "JumpingJacks": _jumping_jacks,
    "Punching": _punching, "Bending": _bending, "Turning": _turning, "ArmCircles": _arm_circles,
}
assert tuple(_ACTION_LAYERS) == ACTIONS


# ---------------------------------------------------------------- small helpers


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return x * x * (3 - 2 * x)


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along the first axis, edges held constant."""
    if sigma <= 0:
        return x
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.concatenate([np.full(r, x[0]), x, np.full(r, x[-1])])
    return np.convolve(padded, k, mode="valid")

