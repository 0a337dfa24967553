"""ROS 2 glue of seem_ros: message conversions, parameters and the lifecycle node."""
