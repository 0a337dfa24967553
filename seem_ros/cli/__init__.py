"""Command-line tools (``seem-ros COMMAND``)."""
