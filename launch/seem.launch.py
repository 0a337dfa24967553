"""Launch the seem lifecycle node on a camera.

    ros2 launch seem_ros seem.launch.py image:=/camera/color/image_raw \
        checkpoint:=/path/to/seem_focalt_v1.pt
    # with 3D (depth.enabled in the params file, or the launch argument depth_enabled:=true):
    ros2 launch seem_ros seem.launch.py image:=/camera/color/image_raw depth_enabled:=true \
        depth:=/camera/aligned_depth_to_color/image_raw \
        depth_camera_info:=/camera/aligned_depth_to_color/camera_info checkpoint:=...

Without a ROS install (no `launch` package) the same node runs with
``python -m seem_ros.ros.seem_node --ros-args --params-file config/seem.yaml -r image:=...``.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

ARGUMENTS = [
    ('namespace', '', 'namespace of the node and its topics'),
    ('image', '/camera/color/image_raw',
     'colour image topic (sensor_msgs/Image; <image>/compressed when input.transport is compressed)'),
    ('click', '', 'pixel clicks (geometry_msgs/Point); empty: <image>_mouse_left, where rqt_image_view '
                  'publishes clicks on the image'),
    ('depth', '/camera/aligned_depth_to_color/image_raw',
     'depth image aligned to the colour image, 16UC1 mm or 32FC1 m (subscribed when depth.enabled is true)'),
    ('depth_camera_info', '/camera/aligned_depth_to_color/camera_info',
     'CameraInfo of the depth image (the colour camera\'s works too; subscribed when depth.enabled is true)'),
    ('depth_enabled', '', 'true/false: override depth.enabled of params_file (3D of every object); empty: keep it'),
    ('params_file', str(Path(get_package_share_directory('seem_ros')) / 'config' / 'seem.yaml'),
     'parameters file (README, "The node")'),
    ('checkpoint', '', 'SEEM checkpoint file; empty: model.checkpoint of params_file'),
    ('use_sim_time', 'false', 'use /clock, e.g. when replaying a bag'),
    ('autostart', 'true', 'configure and activate the node on start'),
    ('log_level', 'info', 'logging level: debug, info, warn, error'),
]


def _seem_node(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {'use_sim_time': arg('use_sim_time').lower() == 'true',
                 'autostart': arg('autostart').lower() == 'true'}
    if arg('checkpoint'):
        overrides['model.checkpoint'] = arg('checkpoint')
    if arg('depth_enabled'):
        overrides['depth.enabled'] = arg('depth_enabled').lower() == 'true'
    return [LifecycleNode(
        package='seem_ros', executable='seem_node', name='seem', namespace=arg('namespace'), output='screen',
        parameters=[arg('params_file'), overrides],
        remappings=[('image', arg('image')), ('image/compressed', arg('image') + '/compressed'),
                    ('~/click', arg('click') or arg('image') + '_mouse_left'),
                    ('depth', arg('depth')), ('depth/camera_info', arg('depth_camera_info'))],
        ros_arguments=['--log-level', arg('log_level')])]


def generate_launch_description():
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text) for name, default, text in ARGUMENTS],
        OpaqueFunction(function=_seem_node),
    ])
