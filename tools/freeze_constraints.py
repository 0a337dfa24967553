"""Print constraints.txt: the exact version of every wheel installed in the running environment.

Left out: torch (its build differs per machine, see requirements-torch.txt), the installers, this
package, and the .egg-info entries that ament installs for ROS packages (not on any index).
Usage: ``make constraints`` (runs ``.venv/bin/python tools/freeze_constraints.py > constraints.txt``).
"""
import re
from importlib.metadata import distributions

SKIP = {'torch', 'uv', 'pip', 'seem-ros-python'}

print('# Exact versions of every package in a working environment (transitive dependencies included),\n'
      '# applied with -c by tools/setup.sh so that a fresh setup installs what was tested.\n'
      '# Regenerate with `make constraints` after changing a pin in requirements*.txt.')
pins = {}
for dist in distributions():
    name = re.sub(r'[-_.]+', '-', dist.metadata['Name']).lower()
    if name not in SKIP and dist.read_text('WHEEL') is not None:  # egg-info entries have no WHEEL
        pins[name] = dist.version
print('\n'.join(f'{name}=={version}' for name, version in sorted(pins.items())))
