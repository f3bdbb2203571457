"""A launcher for tests of what `sagabank up` would configure, started nowhere: its state
under the test's temporary directory, its output kept in memory."""

import io
from pathlib import Path

from sagabank.config import LauncherSettings
from sagabank.launcher import Launcher


def idle_launcher(tmp_path: Path, **settings: object) -> Launcher:
    """The launcher `sagabank up` would run with `settings`, its state directory created."""
    launcher = Launcher(
        LauncherSettings(state_dir=tmp_path / "state", **settings),  # type: ignore[arg-type]
        out=io.StringIO(),
    )
    launcher.state_dir.mkdir(parents=True)
    return launcher
