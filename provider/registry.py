"""Every resource the provider serves: one module per platform, one line here each.

Imported on first use, not at plugin start: the platform modules pull in the HTTP stack.
"""

from envvars_provider.resources.base import Resource
from envvars_provider.resources.vers import RESOURCES as VERS

RESOURCES: tuple[type[Resource], ...] = VERS
