"""A harmless package of coderun's registry fixture."""


def hello(name: str) -> str:
    return f"hello, {name}, from hello_fixture"
