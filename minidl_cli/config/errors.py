"""The one exception the config layer raises: every problem found, one line each."""


class ConfigError(ValueError):
    """Every problem found, one line each: `key.path: what is wrong (how to fix)`."""

    def __init__(self, problems: list[str]):
        # one line each: a torch error's C++ stack trace must not reach the user
        self.problems = [(str(p).splitlines() or [""])[0] for p in problems]
        super().__init__("\n".join(self.problems))
