"""The command that manages who may log in when the server runs with --auth.

    python -m mmchat.users add NAME [--password-stdin]
    python -m mmchat.users remove NAME [--yes]
    python -m mmchat.users list
    python -m mmchat.users add-key NAME
    python -m mmchat.users remove-key KEY_ID
    python -m mmchat.users adopt NAME

It works on the data folder's database, also while the server runs: a removed user or
key stops working at their next request.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import os
import sys
import time
from pathlib import Path

from ..config import Config
from ..store import SQLiteStore, StoreError
from .accounts import AccountError, Accounts, check_name, check_password


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mmchat.users",
        description="Manage the users who may log in to mmchat when it runs with --auth.")
    default_dir = os.environ.get("MMCHAT_DATA_DIR") or str(Config.data_dir)
    parser.add_argument("--data-dir", type=Path, default=Path(default_dir),
                        help="The data folder the server uses (its --data-dir). [env: MMCHAT_DATA_DIR]")
    # Also after the command (`add alice --data-dir DIR`), as people type it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, help="As above.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = functools.partial(commands.add_parser, parents=[common])
    add = command("add", help="Add a user; asks for their password twice.")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true",
                     help="Read the password from the first line of standard input (for scripts).")
    remove = command(
        "remove", help="Remove a user together with their conversations, photos, recordings and exports.")
    remove.add_argument("name")
    remove.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")
    command("list", help="List the users, their API key ids and active log-ins.")
    add_key = command("add-key", help="Make a new API key for a user; it is shown only once.")
    add_key.add_argument("name")
    remove_key = command("remove-key", help="Revoke an API key (its id, as `list` shows it).")
    remove_key.add_argument("key_id")
    adopt = command("adopt", help="Give a user the conversations (and exports) made without --auth.")
    adopt.add_argument("name")
    return parser


PASSWORD_TRIES = 3  # on a terminal, as passwd gives


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return check_password(sys.stdin.readline().rstrip("\r\n"))
    # On a terminal a password that can't be used is asked for again; from a pipe (a
    # script) it ends the command, as a script would only send the same one again.
    tries_left = PASSWORD_TRIES if sys.stdin is not None and sys.stdin.isatty() else 1
    while True:
        tries_left -= 1
        try:
            first = check_password(getpass.getpass("Password: "))
            if getpass.getpass("The same password again: ") != first:
                raise AccountError("The two passwords differ.")
            return first
        except AccountError as exc:
            if not tries_left:
                raise AccountError(f"{exc} Nothing was changed; run the command again.") from None
            print(f"{exc} Try again.", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    with Accounts(args.data_dir) as accounts:
        if args.command == "add":
            check_name(args.name)  # before asking for a password that could not be used
            accounts.add_user(args.name, _new_password(args.password_stdin))
            print(f"Added {args.name}. They can log in once the server runs with --auth.")
        elif args.command == "remove":
            if not accounts.has_user(args.name):
                raise AccountError(f"There is no user {args.name!r}; `list` shows who there is.")
            if not args.yes:
                answer = input(f"Remove {args.name} and all their conversations, photos, recordings and "
                               "exports? This can't be undone. Type yes to go on: ")
                if answer.strip().lower() != "yes":
                    print("Nothing was removed.")
                    return 1
            with SQLiteStore(args.data_dir) as store:
                removed = accounts.remove_user(args.name, store)
            print(f"Removed {args.name} and {removed} conversation{'s' if removed != 1 else ''}.")
        elif args.command == "list":
            users = accounts.list_users()
            if not users:
                print("No users yet. Add one with: python -m mmchat.users add NAME")
            for user in users:
                added = time.strftime("%Y-%m-%d", time.localtime(user.created))
                keys = ", ".join(user.key_ids) or "none"
                print(f"{user.name}\tadded {added}\tAPI keys: {keys}\tlogged in: {user.sessions}")
        elif args.command == "add-key":
            key = accounts.add_key(args.name)
            print(f"A new API key for {args.name} (shown only now; keep it somewhere safe):\n{key}")
        elif args.command == "remove-key":
            owner = accounts.remove_key(args.key_id)
            print(f"Revoked the API key {args.key_id} of {owner}.")
        elif args.command == "adopt":
            with SQLiteStore(args.data_dir) as store:
                moved, exports = accounts.adopt(args.name, store)
            if not moved and not exports:
                print(f"Moved 0 conversations: there are none made without --auth in {args.data_dir} "
                      f"(any more), so nothing was given to {args.name}.")
            else:
                print(f"Moved {_count(moved, 'conversation')} made without --auth to {args.name}"
                      + (f", and {_count(exports, 'export')} to {accounts.exports_folder(args.name)}" if exports
                         else "") + ".")
    return 0


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except AccountError as exc:
        print(exc, file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"Can't use the data folder {args.data_dir}: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print("\nNothing was changed.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
