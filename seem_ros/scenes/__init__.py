"""Procedural test scenes for seem_ros: rendering with ground truth (:mod:`.render`, numpy/cv2
only) and rosbag2 writing (:mod:`.bag`, rosbags)."""
from .render import (BACKGROUNDS, PALETTE, PROMPT_KINDS, SCENARIO_SECONDS, SHAPES, Camera, ObjectState,
                     RenderedFrame, Scene, SceneObject, ScriptedPrompt, Trajectory, build_scene, click_point,
                     depth_to_mm, reference_patch, render_frame, scripted_prompts)

__all__ = ['BACKGROUNDS', 'PALETTE', 'PROMPT_KINDS', 'SCENARIO_SECONDS', 'SHAPES', 'Camera', 'ObjectState',
           'RenderedFrame', 'Scene', 'SceneObject', 'ScriptedPrompt', 'Trajectory', 'build_scene', 'click_point',
           'depth_to_mm', 'reference_patch', 'render_frame', 'scripted_prompts']
