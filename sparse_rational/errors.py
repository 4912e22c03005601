"""The one exception type that the command line turns into a one-line error (exit 2)."""


class UserError(Exception):
    """Bad input from the user: a file, a line, an option. Its message is one line."""


class DataError(UserError):
    """A data file that cannot be read or parsed; the message names the file (and line)."""


class TrainingDiverged(UserError):
    """The loss or the weights became NaN or infinite; training stopped (one-line message)."""


class ParameterError(UserError):
    """A bad value of a named parameter. The library's message names the parameter as the
    API spells it (``reg_strength``); the command line shows the option (``--reg-strength``).
    Other parameters the message mentions are written ``{name}`` in ``message`` and listed
    in ``mentions``."""

    def __init__(self, param: str, message: str, *mentions: str):
        self.param, self.message, self.mentions = param, message, mentions
        super().__init__(self.render(lambda name: name))

    def render(self, spell) -> str:
        """The message with every parameter name spelled by ``spell``."""
        text = self.message.format(**{m: spell(m) for m in self.mentions}) if self.mentions else self.message
        return f"{spell(self.param)}: {text}"
