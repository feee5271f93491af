"""Every platform the server serves: one module (or package) per platform, one line each below."""

from envvars_server.platform import Platform
from envvars_server.platforms import hoody, phala, sevalla, vers, vers_vm, vertra

VERS = Platform("vers", "Vers", vers.ENVELOPE, (vers.router, vers_vm.router), run=vers_vm.run)

HOODY = Platform("hoody", "Hoody", hoody.ENVELOPE, (hoody.router,), run=hoody.run)

SEVALLA = Platform("sevalla", "Sevalla", sevalla.ENVELOPE, (sevalla.router,), run=sevalla.run)

VERTRA = Platform("vertra", "Vertra", vertra.ENVELOPE, (vertra.router,), run=vertra.run)

PHALA = Platform("phala", "Phala", phala.ENVELOPE, (phala.router,), run=phala.run, workload_options=phala.OPTIONS)

PLATFORMS: tuple[Platform, ...] = (VERS, HOODY, SEVALLA, VERTRA, PHALA)
