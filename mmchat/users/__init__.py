"""Users for --auth: accounts (passwords, log-in sessions, API keys), the log-in page, and
who may fetch which file.

    python -m mmchat.users add NAME        # and: remove, list, add-key, remove-key

Without --auth none of this is used: one person on their own machine, owner 'local'.
"""

from .accounts import AccountError, Accounts, SessionLimits, UserSummary, check_name

__all__ = ["AccountError", "Accounts", "SessionLimits", "UserSummary", "check_name"]
