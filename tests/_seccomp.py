"""
What the sandbox tests need to install a syscall filter.

The filter is installed by a launcher script run with Debian's
``/usr/bin/python3`` (``python3-seccomp`` is built for that interpreter, not
for the venv's), which then ``execv``'s the program under test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

#: The interpreter that has the libseccomp binding.
SYSTEM_PYTHON = "/usr/bin/python3"


def have_seccomp() -> bool:
    """Whether :data:`SYSTEM_PYTHON` exists and can ``import seccomp``."""
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import seccomp"], capture_output=True, check=False
    )
    return probe.returncode == 0


#: Skips a test where no filter can be installed.
needs_seccomp = pytest.mark.skipif(
    not have_seccomp(),
    reason="no libseccomp binding for /usr/bin/python3"
    " (apt-get install python3-seccomp)",
)
