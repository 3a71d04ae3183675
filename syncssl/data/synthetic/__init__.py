"""The embedded synthetic multi-camera dataset: people moving in a room, filmed by a calibrated rig.

No download needed: ``syncssl-data synth`` (or :func:`ensure_synthetic`) renders it in the on-disk layout of
DESIGN.md. Modules: ``body`` (subjects and forward kinematics), ``motion`` (actions), ``rig`` (cameras),
``scene`` (the room, each camera's background), ``render`` (the ray caster), ``generator`` (presets, writer).
"""
from .body import JOINT_NAMES, Look, Subject, clothing_colour, make_subject
from .generator import (
    GENERATOR,
    GENERATOR_VERSION,
    PRESETS,
    GenerationReport,
    Preset,
    SequenceSpec,
    SequenceStats,
    ensure_synthetic,
    existing_config,
    generate,
    generate_report,
    generate_sequence,
    get_preset,
    plan_sequences,
    render_sequence,
)
from .motion import ACTIONS, Motion, animate
from .rig import make_rig
from .scene import make_room

__all__ = [
    "JOINT_NAMES", "Look", "Subject", "clothing_colour", "make_subject", "GENERATOR",
    "GENERATOR_VERSION", "PRESETS", "GenerationReport", "Preset", "SequenceSpec", "SequenceStats",
    "ensure_synthetic", "existing_config", "generate", "generate_report", "generate_sequence", "get_preset",
    "plan_sequences", "render_sequence", "ACTIONS", "Motion", "animate", "make_rig", "make_room",
]
