"""Reading a file that nothing vouches for: regular files only, under a size limit, values nested only so deep.

runfolder.py reads a run folder's summary.json, metrics.csv and .hydra/*.yaml through these, so
that a FIFO, a link to /dev/zero, a huge file, JSON nested 100000 lists deep or a YAML "billion
laughs" file makes one RunFolderError (`PATH: why`) instead of a hang, a memory blow-up or a
traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from dlrun.errors import RunFolderError

MAX_DEPTH = 100  # levels of lists and mappings in a JSON or YAML value (dlrun writes 4); deeper ones overflow the stack of what walks them
MAX_YAML_VALUES = 100_000  # values of a YAML file with its aliases expanded (dlrun writes about 100): a "billion laughs" stops here

FILE_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of `path`, a regular file (or a link to one) of at most `limit` bytes.

    Raises FileNotFoundError when it is missing, RunFolderError when it is larger or anything but a
    regular file: a FIFO (whose opening would wait for a writer) or a device (/dev/zero never ends)
    is never opened, and one swapped in after that check is opened without blocking and not read.
    """

    def refuse(mode: int) -> None:
        if not stat.S_ISREG(mode):
            raise RunFolderError(f"{path}: not a regular file ({FILE_KINDS.get(stat.S_IFMT(mode), 'a socket or other special file')})")

    try:
        refuse(os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with open(fd, "rb") as f:
            info = os.fstat(fd)
            refuse(info.st_mode)
            data = b"" if info.st_size > limit else f.read(limit + 1)
    except (FileNotFoundError, RunFolderError):
        raise
    except OSError as err:  # permission denied, a link loop, an I/O error
        raise RunFolderError(f"{path}: {err.strerror or err}") from None
    if info.st_size > limit or len(data) > limit:
        raise RunFolderError(f"{path}: larger than {limit >> 20} MiB")
    return data


def check_nesting(value: Any, path: Path) -> None:
    """Raise RunFolderError when `value` nests lists and dicts more than MAX_DEPTH levels deep."""
    level, depth = [value], 0  # the lists and dicts `depth` levels down
    while level := [v for v in level if isinstance(v, (dict, list))]:
        depth += 1
        if depth > MAX_DEPTH:
            raise RunFolderError(f"{path}: nested more than {MAX_DEPTH} levels deep")
        level = [child for v in level for child in (v.values() if isinstance(v, dict) else v)]


def check_yaml_nodes(root: Any, path: Path) -> None:
    """Raise RunFolderError when a composed YAML node graph, walked as its value would be (each alias
    expanded where it is used), holds more than MAX_YAML_VALUES values or nests more than MAX_DEPTH levels."""
    import yaml  # the caller composed `root` with it

    count, stack = 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise RunFolderError(f"{path}: expands to more than {MAX_YAML_VALUES} values (each use of an alias counted)")
        if isinstance(node, yaml.CollectionNode):
            if depth > MAX_DEPTH:
                raise RunFolderError(f"{path}: nested more than {MAX_DEPTH} levels deep")
            children = node.value if isinstance(node, yaml.SequenceNode) else [child for pair in node.value for child in pair]
            stack.extend((child, depth + 1) for child in children)
