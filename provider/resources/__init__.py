"""Every resource the provider serves: one module per platform, one line here each."""

from envvars_provider.resources.base import Resource
from envvars_provider.resources.vers import RESOURCES as VERS

RESOURCES: tuple[type[Resource], ...] = VERS
