"""Every platform the server serves: one module (or package) per platform, one line each below."""

from envvars_server.platform import Platform
from envvars_server.platforms import vers, vers_vm

VERS = Platform("vers", vers.ENVELOPE, (vers.router, vers_vm.router), run=vers_vm.run)

PLATFORMS: tuple[Platform, ...] = (VERS,)
