"""Resources, one module per platform; `envvars_provider.registry` lists them."""
