"""Every platform the provider serves: one module per platform, one line here each.

Imported on first use, not at plugin start: the platform modules pull in the HTTP stack.
"""

from envvars_provider.platform import Platform
from envvars_provider.resources.base import Resource
from envvars_provider.resources.hoody import PLATFORM as HOODY
from envvars_provider.resources.phala import PLATFORM as PHALA
from envvars_provider.resources.sevalla import PLATFORM as SEVALLA
from envvars_provider.resources.vers import PLATFORM as VERS
from envvars_provider.resources.vertra import PLATFORM as VERTRA

PLATFORMS: tuple[Platform, ...] = (VERS, HOODY, SEVALLA, VERTRA, PHALA)
RESOURCES: tuple[type[Resource], ...] = tuple(resource for platform in PLATFORMS for resource in platform.resources)
