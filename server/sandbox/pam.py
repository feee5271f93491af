"""A login's environment, read by the real Linux-PAM `pam_env` module (libpam through ctypes).

The guest agent builds `exec`'s environment with this, so a command sees exactly what a login
shell in the VM would: pam_env ends a value at `#` and skips over-long lines, and nothing here
re-implements that. Stdlib only: it runs inside the VM sandbox, on the host's libpam (>= 1.4,
for `pam_start_confdir`) and `pam_env.so` (Debian: libpam0g, libpam-modules).
"""

from __future__ import annotations

import ctypes
import os

SERVICE = "envvars-login"
PAM_CONV_ERR = 19  # pam_env never converses; any question is refused

_Conv = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


class _PamConv(ctypes.Structure):
    _fields_ = [("conv", _Conv), ("appdata", ctypes.c_void_p)]


class PamUnavailable(RuntimeError):
    """libpam or pam_env.so is missing: the message says what to install."""


def service(envfile: str) -> str:
    """The PAM service file that runs pam_env on `envfile` only (no user file, no pam_env.conf)."""
    return f"session required pam_env.so readenv=1 envfile={envfile} user_readenv=0 conffile=/dev/null\n"


def _libpam() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libpam.so.0")
    except OSError as exc:
        raise PamUnavailable(f"libpam is not installed ({exc}); Debian: apt-get install libpam0g") from None
    if not hasattr(lib, "pam_start_confdir"):
        raise PamUnavailable("libpam is older than 1.4 (no pam_start_confdir)")
    lib.pam_getenvlist.restype = ctypes.POINTER(ctypes.c_void_p)
    return lib


def login_variables(confdir: str, user: str = "root") -> dict[str, str]:
    """The variables pam_env sets for a session of `user`, per the SERVICE file in `confdir`."""
    lib = _libpam()
    conv = _PamConv(_Conv(lambda *_: PAM_CONV_ERR), None)
    handle = ctypes.c_void_p()
    status = lib.pam_start_confdir(SERVICE.encode(), user.encode(), ctypes.byref(conv), os.fsencode(confdir),
                                   ctypes.byref(handle))
    if status != 0:
        raise PamUnavailable(f"pam_start_confdir failed with PAM status {status}")
    variables: dict[str, str] = {}
    try:
        status = lib.pam_open_session(handle, 0)
        if status != 0:
            raise PamUnavailable(f"pam_env.so did not run (PAM status {status}); Debian: apt-get install "
                                 "libpam-modules")
        entries = lib.pam_getenvlist(handle)  # a malloc'd copy, ours to free
        libc = ctypes.CDLL(None)
        index = 0
        while entries and entries[index]:
            key, _, value = os.fsdecode(ctypes.string_at(entries[index])).partition("=")
            variables[key] = value
            libc.free(ctypes.c_void_p(entries[index]))
            index += 1
        if entries:
            libc.free(entries)
    finally:
        lib.pam_end(handle, 0)
    return variables
