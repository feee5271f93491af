"""Property names: snake_case in Python, lowerCamelCase in the schema, the SDKs and on the wire."""


def camel(name: str) -> str:
    """snake_case → lowerCamelCase."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def snake(name: str) -> str:
    """lowerCamelCase → snake_case."""
    return "".join(f"_{char.lower()}" if char.isupper() else char for char in name)
