"""Pure-PyTorch SEEM (no ROS imports): backbones, pixel decoder, SEEM decoder, text encoder."""
