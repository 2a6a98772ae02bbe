"""Build `rolling_ball.blend`, the seed's test scene for the `hpcrun render` farm.

The render farm needs a small scene that every engine renders headless, whose frames
visibly differ (so a test can tell frame 1 from frame N and catch a farm that renders
one frame N times), and that anyone can regenerate instead of trusting a binary file
in the repository. This script builds it from nothing: a striped ball (UV sphere, two
coloured materials so its spin shows) rolls along +X across a ground plane; its
location AND rotation are keyframed linearly over frames 1..N so that the angle turned
equals distance / radius (it rolls, it does not skid); a fixed camera and a sun light
look at it; the world has a sky-blue background. Render defaults are deliberately
cheap (Cycles on the CPU, 16 samples, no denoising, 640x360) so tests and demos stay
fast; users override samples and resolution from the command line.

Run it with Blender 3.x or newer (no display needed):

    blender -b --factory-startup --python-exit-code 1 \
        --python scripts/blender/make_rolling_ball.py -- OUT.blend [--frames N]

It is deterministic (no randomness, fixed Cycles seed) and exits non-zero on any error,
also when run without `--python-exit-code 1`.
"""

from __future__ import annotations

import argparse
import math
import sys
import traceback
from pathlib import Path

import bmesh
import bpy
from mathutils import Vector

BALL_RADIUS_M = 0.5
BALL_START_X_M = -3.0
BALL_END_X_M = 3.0
FPS = 24
DEFAULT_FRAMES = 48
STRIPES = 8  # wedges around the ball's pole, alternating two materials


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the arguments Blender leaves after `--` (everything before is Blender's)."""
    script_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(
        prog="make_rolling_ball.py", description="Write the rolling-ball test scene."
    )
    parser.add_argument("out", type=Path, help="path of the .blend file to write")
    parser.add_argument(
        "--frames", type=int, default=DEFAULT_FRAMES, help="last frame (first is 1)"
    )
    args = parser.parse_args(script_args)
    if args.frames < 2:
        parser.error("--frames must be at least 2 (the ball needs somewhere to roll)")
    return args


def make_material(name: str, rgba: tuple[float, float, float, float]) -> bpy.types.Material:
    """A Principled material for Cycles/EEVEE whose viewport colour matches for Workbench."""
    material = bpy.data.materials.new(name)
    material.diffuse_color = rgba  # what Workbench shows (shading colour type MATERIAL)
    material.use_nodes = True
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = rgba
    bsdf.inputs["Roughness"].default_value = 0.5
    return material


def make_ball() -> bpy.types.Object:
    """A smooth UV sphere resting on the ground, striped so its rotation is visible."""
    mesh = bpy.data.meshes.new("Ball")
    bm = bmesh.new()
    bmesh.ops.create_uvsphere(bm, u_segments=32, v_segments=16, radius=BALL_RADIUS_M)
    bm.to_mesh(mesh)
    bm.free()
    mesh.materials.append(make_material("BallRed", (0.8, 0.05, 0.03, 1.0)))
    mesh.materials.append(make_material("BallWhite", (0.9, 0.9, 0.85, 1.0)))
    for polygon in mesh.polygons:
        # Wedges around the pole (local Z); the ball spins about Y, so they tumble.
        longitude = math.atan2(polygon.center.y, polygon.center.x) + math.pi
        polygon.material_index = int(longitude / (2 * math.pi) * STRIPES) % 2
        polygon.use_smooth = True
    ball = bpy.data.objects.new("Ball", mesh)
    ball.rotation_mode = "XYZ"
    return ball


def make_ground() -> bpy.types.Object:
    """A 20 m square ground plane at z=0 with its own grey-green material."""
    half_m = 10.0
    mesh = bpy.data.meshes.new("Ground")
    mesh.from_pydata(
        [
            (-half_m, -half_m, 0.0),
            (half_m, -half_m, 0.0),
            (half_m, half_m, 0.0),
            (-half_m, half_m, 0.0),
        ],
        [],
        [(0, 1, 2, 3)],
    )
    mesh.materials.append(make_material("Ground", (0.25, 0.35, 0.2, 1.0)))
    return bpy.data.objects.new("Ground", mesh)


def keyframe_roll(ball: bpy.types.Object, frame_end: int) -> None:
    """Key location and rotation at the first and last frame, linear in between.

    Rolling without slipping along +X means turning about +Y by distance / radius;
    with both curves linear this holds on every frame, not only on the keys.
    """
    distance_m = BALL_END_X_M - BALL_START_X_M
    for frame, x_m, angle_rad in (
        (1, BALL_START_X_M, 0.0),
        (frame_end, BALL_END_X_M, distance_m / BALL_RADIUS_M),
    ):
        ball.location = (x_m, 0.0, BALL_RADIUS_M)
        ball.rotation_euler = (0.0, angle_rad, 0.0)
        ball.keyframe_insert(data_path="location", frame=frame)
        ball.keyframe_insert(data_path="rotation_euler", frame=frame)
    for fcurve in ball.animation_data.action.fcurves:
        for point in fcurve.keyframe_points:
            point.interpolation = "LINEAR"


def make_camera(target: Vector) -> bpy.types.Object:
    """A fixed camera in front of and above the path, aimed at its middle."""
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.data.lens = 32.0
    camera.location = (0.0, -7.0, 2.5)
    direction = target - camera.location
    camera.rotation_euler = direction.to_track_quat("-Z", "Y").to_euler()
    return camera


def make_sun() -> bpy.types.Object:
    """A sun from the upper left so the ball casts a visible shadow."""
    light = bpy.data.lights.new("Sun", type="SUN")
    light.energy = 3.0
    light.angle = math.radians(5.0)
    sun = bpy.data.objects.new("Sun", light)
    sun.rotation_euler = (math.radians(45.0), math.radians(-20.0), math.radians(30.0))
    return sun


def make_world() -> bpy.types.World:
    """A plain sky-blue background (nodes for Cycles/EEVEE, `color` for Workbench)."""
    rgb = (0.4, 0.6, 0.9)
    world = bpy.data.worlds.new("World")
    world.color = rgb
    world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (*rgb, 1.0)
    background.inputs["Strength"].default_value = 1.0
    return world


def configure_render(scene: bpy.types.Scene, frame_end: int) -> None:
    """Cheap, overridable defaults: every value here is meant to be replaced per run."""
    scene.frame_start = 1
    scene.frame_end = frame_end
    scene.frame_current = 1
    scene.render.fps = FPS
    scene.render.fps_base = 1.0
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.preview_samples = 16
    scene.cycles.use_denoising = False  # denoising cost varies by build; keep frames cheap
    scene.cycles.seed = 0
    scene.eevee.taa_render_samples = 16
    scene.render.resolution_x = 640
    scene.render.resolution_y = 360
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.use_overwrite = True
    scene.render.use_placeholder = False
    scene.render.filepath = "//frames/frame_####"


def build_scene(frame_end: int) -> bpy.types.Scene:
    """Start from an empty file (no default cube) and add everything the scene needs."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = "RollingBall"
    ball = make_ball()
    camera = make_camera(target=Vector((0.0, 0.0, BALL_RADIUS_M)))
    for obj in (make_ground(), ball, camera, make_sun()):
        scene.collection.objects.link(obj)
    keyframe_roll(ball, frame_end)
    scene.camera = camera
    scene.world = make_world()
    configure_render(scene, frame_end)
    return scene


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = args.out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    build_scene(args.frames)
    result = bpy.ops.wm.save_as_mainfile(filepath=str(out))
    if "FINISHED" not in result or not out.is_file():
        raise RuntimeError(f"saving {out} failed: {result}")
    print(f"make_rolling_ball: wrote {out} (frames 1-{args.frames})")
    return 0


if __name__ == "__main__":
    try:
        status = main(sys.argv)
    except SystemExit:
        raise  # argparse errors already carry their exit status
    except BaseException:
        traceback.print_exc()
        status = 1
    if status:
        sys.exit(status)
