"""Every error dlrun reports by name, in one module that imports nothing heavy.

The command line matches these classes (never class names as strings) to choose the message and
the exit code: a `DlrunError` is something the user can fix by changing the command (exit 2), a
`Diverged` run failed on its own numbers (exit 1).
"""


class DlrunError(Exception):
    """A bad value, missing data or a missing device; shown as `dlrun: error: <message>`, exit code 2."""


class ConfigError(DlrunError):
    """A config value outside its allowed range, or a combination that cannot work."""


class DataError(DlrunError):
    """Data missing, unreadable or corrupt."""


class DeviceError(DlrunError):
    """The asked-for device is not on this machine."""


class ResumeError(DlrunError):
    """The run cannot be resumed as asked."""


class RunFolderError(DlrunError):
    """A run folder that cannot be read, or that is written in a format this dlrun does not know."""


class DiskFull(DlrunError):
    """A file of the run folder could not be written for lack of space (full disk, quota, file-size limit)."""


class RunInUse(DlrunError):
    """The run folder is held by another live dlrun process."""


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""
