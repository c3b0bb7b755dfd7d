"""Errors whose message is meant for the person using the app."""


class UserFacingError(Exception):
    """Its message is shown to the user as is: clear, specific, and naming the fix.

    `key` (with `values` for its blanks) names the message in mmchat.i18n, so the page can
    say it in its own language; the English words given here are the message everywhere else
    (the API, the logs) and wherever a translation is missing.
    """

    def __init__(self, message: str, key: str | None = None, **values) -> None:
        super().__init__(message)
        self.key = key
        self.values = values

    @property
    def message(self) -> str:
        return str(self)

    def message_in(self, language: str | None) -> str:
        from .i18n import translated

        return translated(self.message, self.key, language, self.values)


class InputError(UserFacingError):
    """The user's input was refused (bad photo, silence, too long...)."""


class ModelUnavailableError(UserFacingError):
    """A model could not be loaded (not cached while offline, wrong path, no GPU...)."""
