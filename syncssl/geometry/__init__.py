"""Cameras, projection and the skeleton: small modules of pure, shape-checked functions."""
from .camera import (
    Camera,
    camera_to_world,
    distort,
    look_at,
    matrix_to_quaternion,
    matrix_to_rodrigues,
    project,
    quaternion_to_matrix,
    quaternion_to_rodrigues,
    ray_distance,
    rig_focus,
    rodrigues_to_matrix,
    undistort,
    unproject,
    world_to_camera,
)
from .h36m import H36M_CAMERA_IDS, H36M_FPS, h36m_camera, h36m_subjects
from .skeleton import H36M17, H36M_32_TO_17, SKELETONS, Mirrored, Skeleton, mirror, root_relative

__all__ = [
    "Camera", "camera_to_world", "distort", "look_at", "matrix_to_quaternion", "matrix_to_rodrigues", "project",
    "quaternion_to_matrix", "quaternion_to_rodrigues", "ray_distance", "rig_focus", "rodrigues_to_matrix",
    "undistort", "unproject", "world_to_camera", "H36M_CAMERA_IDS", "H36M_FPS", "h36m_camera", "h36m_subjects",
    "H36M17", "H36M_32_TO_17", "SKELETONS", "Mirrored", "Skeleton", "mirror", "root_relative",
]
