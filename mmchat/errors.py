"""Errors whose message is meant for the person using the app."""


class UserFacingError(Exception):
    """Its message is shown to the user as is: clear, specific, and naming the fix."""

    @property
    def message(self) -> str:
        return str(self)


class InputError(UserFacingError):
    """The user's input was refused (bad photo, silence, too long...)."""


class ModelUnavailableError(UserFacingError):
    """A model could not be loaded (not cached while offline, wrong path, no GPU...)."""
