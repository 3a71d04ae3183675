import numpy as np
import pytest

from syncssl.geometry import (
    H36M17,
    H36M_CAMERA_IDS,
    Camera,
    camera_to_world,
    h36m_camera,
    h36m_subjects,
    look_at,
    matrix_to_quaternion,
    matrix_to_rodrigues,
    mirror,
    project,
    quaternion_to_matrix,
    ray_distance,
    rig_focus,
    rodrigues_to_matrix,
    unproject,
    world_to_camera,
)

rng = np.random.default_rng(0)


def random_rotations(n):
    q = rng.normal(size=(n, 4))
    return quaternion_to_matrix(q)


def random_camera(name="cam", size=(640, 480), dist=(0.05, -0.02, 0.001, -0.002, 0.003)):
    R, t = look_at(rng.uniform(-1, 1, 3) * 500 + [4500, 0, 1500], [0, 0, 900])
    K = np.array([[600.0, 0.5, 321.3], [0, 605.0, 238.7], [0, 0, 1]])
    return Camera(name, size, K, np.array(dist), R, t)


def opencv_documented(X, cam):
    """OpenCV's documented pinhole + radial/tangential model, written out independently."""
    Xc = (cam.R @ X.T).T + cam.t
    x, y = Xc[:, 0] / Xc[:, 2], Xc[:, 1] / Xc[:, 2]
    k1, k2, p1, p2, k3 = cam.dist
    r2 = x**2 + y**2
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    xpp = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x**2)
    ypp = y * radial + p1 * (r2 + 2 * y**2) + 2 * p2 * x * y
    fx, fy, cx, cy, skew = cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2], cam.K[0, 1]
    return np.stack([fx * xpp + skew * ypp + cx, fy * ypp + cy], 1)


def test_rotation_conversions_round_trip():
    R = random_rotations(200)
    assert np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=1e-12)
    assert np.allclose(rodrigues_to_matrix(matrix_to_rodrigues(R)), R, atol=1e-9)
    q = matrix_to_quaternion(R)
    assert np.allclose(quaternion_to_matrix(q), R, atol=1e-12)
    # angles near pi and zero are the hard cases
    for angle in (0.0, 1e-10, np.pi - 1e-7, np.pi):
        axis = rng.normal(size=3)
        r = axis / np.linalg.norm(axis) * angle
        assert np.allclose(rodrigues_to_matrix(matrix_to_rodrigues(rodrigues_to_matrix(r))), rodrigues_to_matrix(r),
                           atol=1e-6)


def test_rodrigues_matches_axis_angle_definition():
    R = rodrigues_to_matrix(np.array([0, 0, np.pi / 2]))
    assert np.allclose(R @ [1, 0, 0], [0, 1, 0])


def test_world_camera_round_trip_and_batching():
    cam = random_camera()
    X = rng.normal(size=(4, 5, 3)) * 500 + [0, 0, 900]
    Xc = world_to_camera(X, cam.R, cam.t)
    assert Xc.shape == X.shape
    assert np.allclose(camera_to_world(Xc, cam.R, cam.t), X)
    assert np.allclose(cam.center, np.linalg.solve(cam.R, -cam.t))


def test_projection_agrees_with_opencv_documented_formula():
    cam = random_camera()
    X = rng.normal(size=(500, 3)) * [800, 800, 500] + [0, 0, 900]
    assert np.allclose(cam.project(X), opencv_documented(X, cam), atol=1e-9)


def test_project_unproject_round_trip():
    cam = random_camera()
    Xc = rng.uniform(-1, 1, size=(100, 3)) * [1500, 1000, 0] + [0, 0, 4500]
    uv = cam.project_camera(Xc)
    assert np.allclose(unproject(uv, Xc[:, 2], cam.K, cam.dist), Xc, atol=1e-6)


def test_shape_checks():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        project(np.zeros((4, 2)), np.eye(3))
    with pytest.raises(ValueError, match="distortion"):
        Camera("c", (10, 10), np.eye(3), dist=[0.1, 0.2])
    with pytest.raises(ValueError, match="not a rotation"):
        Camera("c", (10, 10), np.eye(3), R=np.ones((3, 3)))
    with pytest.raises(ValueError, match="lens model"):
        Camera("c", (10, 10), np.eye(3), model="fisheye")


def test_skeleton_h36m17():
    assert H36M17.num_joints == 17
    assert H36M17.names[1] == "r_hip" and H36M17.side(1) == "right" and H36M17.side(4) == "left"
    perm = H36M17.mirror_permutation
    assert np.array_equal(perm[perm], np.arange(17))
    assert len(H36M17.bones) == 16


def test_mirror_twice_is_identity_and_consistent_with_projection():
    cam = random_camera()
    W = cam.size[0]
    joints_w = rng.normal(size=(3, 17, 3)) * 300 + [0, 0, 900]
    j3c = cam.world_to_camera(joints_w)
    j2 = cam.project(joints_w)
    m = mirror(W, joints2d=j2, joints3d_cam=j3c, camera=cam)
    # the mirrored camera projects the world points onto the mirrored image
    perm = H36M17.mirror_permutation
    assert np.allclose(m.camera.project(joints_w)[..., perm, :], m.joints2d, atol=1e-9)
    # and the mirrored camera-frame joints project with it too
    assert np.allclose(m.camera.project_camera(m.joints3d_cam), m.joints2d, atol=1e-9)
    mm = mirror(W, joints2d=m.joints2d, joints3d_cam=m.joints3d_cam, camera=m.camera)
    assert np.allclose(mm.joints2d, j2) and np.allclose(mm.joints3d_cam, j3c)
    for a in ("K", "dist", "R", "t"):
        assert np.allclose(getattr(mm.camera, a), getattr(cam, a))
    # left and right swapped: the mirrored right hip is the original left hip
    assert np.allclose(m.joints3d_cam[:, 1, 0], -j3c[:, 4, 0])


def test_mirror_rejects_wrong_width():
    with pytest.raises(ValueError, match="width"):
        mirror(100, camera=random_camera(size=(640, 480)))


def test_h36m_table_projects_centre_point_near_image_centre():
    assert set(h36m_subjects()) == {"S1", "S5", "S6", "S7", "S8", "S9", "S11"}
    depths = []
    for s in h36m_subjects():
        for cid in H36M_CAMERA_IDS:
            cam = h36m_camera(s, cid)
            assert cam.model == "h36m"
            X = np.array([0.0, 0.0, 900.0])
            depth = cam.world_to_camera(X)[2]
            depths.append(depth)
            assert 3800 < depth < 5800, (s, cid, depth)  # a few cameras sit a little beyond 5.5 m
            u, v = cam.project(X)
            assert abs(u - 500) < 200 and abs(v - 500) < 200, (s, cid, u, v)
    assert 4000 < np.median(depths) < 5500


def test_h36m_lens_model_matches_published_formula():
    cam = h36m_camera("S9", "58860488")
    X = rng.normal(size=(50, 3)) * 400 + [0, 0, 900]
    Xc = cam.world_to_camera(X)
    x, y = Xc[:, 0] / Xc[:, 2], Xc[:, 1] / Xc[:, 2]
    k1, k2, p1, p2, k3 = cam.dist
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    tan = p1 * y + p2 * x
    xd, yd = x * (radial + tan) + p2 * r2, y * (radial + tan) + p1 * r2
    uv = np.stack([cam.K[0, 0] * xd + cam.K[0, 2], cam.K[1, 1] * yd + cam.K[1, 2]], 1)
    assert np.allclose(cam.project(X), uv)
    with pytest.raises(KeyError, match="S2"):
        h36m_camera("S2", "58860488")


def test_rig_focus_is_where_the_cameras_look_and_rays_measure_distance_to_it():
    target = np.array([300.0, -200.0, 900.0])
    cams = []
    for k, angle in enumerate(np.linspace(0, 2 * np.pi, 4, endpoint=False)):
        R, t = look_at(target + [4000 * np.cos(angle), 4000 * np.sin(angle), 600 + 100 * k], target)
        cams.append(Camera(f"cam{k}", (640, 480), np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]]),
                           np.array([0.05, -0.02, 0.001, -0.002, 0.0]), R, t))
    np.testing.assert_allclose(rig_focus(cams), target, atol=1e-6)
    assert rig_focus(cams[:1]) is None  # one camera looks along a line, not at a point
    away = [Camera(f"away{k}", (640, 480), cams[0].K, np.zeros(5), *look_at([sign * 1000.0, 0, 900],
                                                                             [sign * 5000.0, 300, 900]))
            for k, sign in enumerate((1, -1))]
    assert rig_focus(away) is None  # back to back: where the axes meet lies behind both cameras
    # the ray through the pixel of the point a camera looks at is its axis: a point 500 mm beside it is 500 mm away
    cam = cams[1]
    side = np.cross(cam.R[2], [0, 0, 1])
    side /= np.linalg.norm(side)
    assert ray_distance(cam, cam.project(target), target) < 1e-6
    assert abs(ray_distance(cam, cam.project(target), target + 500 * side) - 500) < 1e-6
    assert ray_distance(cam, cam.project(np.stack([target] * 3)), target).shape == (3,)
