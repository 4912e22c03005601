"""The one exception type that the command line turns into a one-line error (exit 2)."""


class UserError(Exception):
    """Bad input from the user: a file, a line, an option. Its message is one line."""


class DataError(UserError):
    """A data file that cannot be read or parsed; the message names the file (and line)."""


class TrainingDiverged(UserError):
    """The loss or the weights became NaN or infinite; training stopped (one-line message)."""


class ParameterError(UserError):
    """A bad value of a named parameter. The library's message names the parameter as the
    API spells it (``reg_strength``); the command line shows the option (``--reg-strength``)."""

    def __init__(self, param: str, message: str):
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message
