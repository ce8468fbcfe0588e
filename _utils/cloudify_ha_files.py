"""Files the formula keeps for itself as root (the host's lock on a minion, the runner's locks
and cache on the master): opened so that a link planted in their place is never followed.

Used by the states (``cloudify_ha.run_locked``) and the master's runner through ``__utils__``.
"""

import os
import stat

from salt.exceptions import CommandExecutionError


def open_private(path, mode=0o600, write=True):
    """
    A read-write descriptor of the formula's own file ``path``, created with ``mode`` when it
    is missing (``write=False``: read-only, and a missing file is an error). Refused
    (``CommandExecutionError``, nothing opened) when ``path`` is a symbolic link
    (``O_NOFOLLOW``), not a regular file, a file with another hard link (a link to a file
    elsewhere: writing the lock would write that file) or a file another user owns.
    """
    flags = (os.O_RDWR | os.O_CREAT) if write else os.O_RDONLY
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if os.path.islink(path):
            raise CommandExecutionError(_refusal(path, "is a symbolic link")) from None
        raise CommandExecutionError(f"{path} cannot be opened: {exc.strerror}") from None
    info = os.fstat(fd)
    what = None
    if not stat.S_ISREG(info.st_mode):
        what = "is not a regular file"
    elif info.st_nlink != 1:
        what = f"has {info.st_nlink} hard links"
    elif info.st_uid != os.geteuid():
        what = f"belongs to user id {info.st_uid}"
    if what is not None:
        os.close(fd)
        raise CommandExecutionError(_refusal(path, what))
    return fd


def _refusal(path, what):
    return (f"{path} {what}: the formula's own files are never followed elsewhere; remove it "
            "(it is re-created at the next run); nothing was changed")
