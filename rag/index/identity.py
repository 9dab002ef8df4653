"""A document's identity: a key that names the same file on every machine, and only that file.

``document_key(path)``:
- symlinks are resolved first (``realpath``), so a folder reached twice through a link is one set of documents;
- a file on a network filesystem (its mount found in ``/proc/self/mountinfo``) is ``FSTYPE://SOURCE/INSIDE``:
  the share as the server names it and the path inside it, so the same share mounted at two paths, or on two
  hosts, gives one key (``nfs4`` is written ``nfs`` and ``smb3``/``smbfs`` ``cifs``: one share, whatever the
  protocol version);
- any other file is ``file://HOST/REALPATH``, HOST being this machine's id (``RAG_HOST_ID``, else
  ``/etc/machine-id``, else the host name), so two hosts' own ``/data/report.pdf`` never collide.

``local_path(key)`` goes back: where this host reads the file of a key, or None when the key names another
machine's disk or a share not mounted here. A plain absolute path (an index written before keys) is read as
this host's file. Everything but ``mount_table``/``host_id`` is a pure function of a parsed mount table, so the
network case is testable with a table given as text.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "sshfs", "9p",
    "afs", "lustre", "gpfs", "beegfs", "fuse.cephfs", "fuse.s3fs", "fuse.rclone", "davfs", "fuse.davfs2",
    "ocfs2", "gfs2", "virtiofs",
})
_SCHEME = {"nfs4": "nfs", "smb3": "cifs", "smbfs": "cifs", "fuse.glusterfs": "glusterfs", "fuse.sshfs": "sshfs",
           "fuse.cephfs": "ceph"}


@dataclass(frozen=True)
class Mount:
    point: str  # where it is mounted here
    root: str  # the folder of the filesystem that appears there ("/" unless a bind or subfolder mount)
    fstype: str
    source: str  # e.g. "server:/export" (nfs), "//server/share" (cifs)

    @property
    def network(self) -> bool:
        return self.fstype in NETWORK_FILESYSTEMS

    @property
    def share(self) -> str:
        """The key's prefix for files on this mount: ``SCHEME://SOURCE`` (no user name, no leading slashes)."""
        source = self.source.lstrip("/")
        if self.fstype in ("fuse.sshfs", "sshfs"):
            source = source.rpartition("@")[2]  # user@host:/dir: the user differs between machines
        return f"{_SCHEME.get(self.fstype, self.fstype)}://{source.rstrip('/')}"


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a ``/proc/PID/mountinfo`` text, in its order (a later mount at a point hides an earlier)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        mounts.append(Mount(_unescape(fields[4]), _unescape(fields[3]), tail[0], _unescape(tail[1])))
    return mounts


def mount_table() -> list[Mount]:
    """This process's mounts (none where there is no /proc: every file is then a local one)."""
    try:
        return parse_mountinfo(Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="surrogateescape"))
    except OSError:
        return []


def host_id() -> str:
    """This machine's id in keys: ``RAG_HOST_ID``, else ``/etc/machine-id``, else the host name."""
    from rag.settings import get_settings

    if configured := get_settings().host_id:
        return configured
    try:
        machine = Path("/etc/machine-id").read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        machine = ""
    return machine or socket.gethostname()


def _inside(path: str, folder: str) -> str | None:
    """``path`` relative to ``folder`` as "/rest" ("" for the folder itself), or None when it is not inside."""
    if folder == "/":
        return path if path != "/" else ""
    if path == folder:
        return ""
    return path[len(folder) :] if path.startswith(folder + "/") else None


def mount_of(real: str, table: list[Mount]) -> Mount | None:
    """The mount a resolved path lies on: the longest mount point holding it, the latest of equals."""
    best: Mount | None = None
    for mount in table:
        if _inside(real, mount.point) is not None and (best is None or len(mount.point) >= len(best.point)):
            best = mount
    return best


def key_of(real: str, table: list[Mount], host: str) -> str:
    """The key of a resolved absolute path, given the mount table and this host's id (pure)."""
    mount = mount_of(real, table)
    if mount is not None and mount.network:
        inside = (mount.root.rstrip("/") + (_inside(real, mount.point) or "")) or "/"
        return f"{mount.share}{inside}"
    return f"file://{host}{real}"


def document_key(path: str | os.PathLike[str], *, table: list[Mount] | None = None, host: str | None = None) -> str:
    """The identity of the file at ``path`` (see the module's docstring)."""
    try:
        real = os.path.realpath(path)
    except ValueError:  # a NUL in it: no file has that name; a key that matches nothing
        real = os.path.abspath(path)
    return key_of(real, mount_table() if table is None else table, host_id() if host is None else host)


def is_key(text: str) -> bool:
    return "://" in text


def local_path(key: str, *, table: list[Mount] | None = None, host: str | None = None) -> str | None:
    """Where this host reads the file named by ``key``; None when it is another host's or on a share not mounted
    here. A plain absolute path (written before keys) is this host's own file."""
    if not is_key(key):
        return key if os.path.isabs(key) else None
    scheme, _, rest = key.partition("://")
    if scheme == "file":
        owner, slash, path = rest.partition("/")
        return "/" + path if slash and owner == (host_id() if host is None else host) else None
    for mount in reversed(mount_table() if table is None else table):
        if not mount.network or not key.startswith(mount.share + "/"):
            continue
        inside = _inside(key[len(mount.share) :], mount.root.rstrip("/") or "/")
        if inside is not None:
            return mount.point.rstrip("/") + inside if mount.point != "/" else inside or "/"
    return None


def key_or_legacy(stored: str, *, table: list[Mount] | None = None, host: str | None = None) -> str:
    """A stored identity as a key: an index written before keys holds plain absolute paths, read as this host's."""
    return stored if is_key(stored) else document_key(stored, table=table, host=host)
