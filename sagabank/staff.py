"""`sagabank staff add|disable|list`: the people who sign in to the bank, managed through
the accounts admin endpoint (scope `staff:manage`, the operator client's by default)."""

import sys
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import httpx
from pydantic import BaseModel, ValidationError

from contracts.auth import Scope, StaffRole
from contracts.staff import (
    STAFF_DISABLE_PATH,
    STAFF_PASSWORD_LENGTH_MIN,
    STAFF_PATH,
    StaffEnrolmentOut,
    StaffList,
    StaffMemberOut,
)
from sagabank.bankclient import HTTP_TIMEOUT_SECONDS_DEFAULT, BankError, launcher_operator_token
from sagabank.bankclient import service_urls as bank_urls
from sagabank.banking.output import operator_token_option
from sagabank.config import LauncherSettings

QR_SUFFIXES = (".png", ".svg")
_DETAIL_LENGTH_MAX = 500
Model = TypeVar("Model", bound=BaseModel)


def _fail(message: str, exit_code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(exit_code)


def _call(
    context: click.Context, method: str, path: str, json: dict[str, Any] | None = None
) -> httpx.Response:
    """The admin endpoint's answer to this request; exits 2 when it cannot be asked and 1
    when it refuses."""
    accounts_url, access_token = context.obj
    url = f"{accounts_url.rstrip('/')}{path}"
    if access_token is None:
        try:
            access_token = launcher_operator_token(accounts_url)
        except BankError as error:
            _fail(str(error), error.exit_code)
    try:
        with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS_DEFAULT, follow_redirects=False) as http:
            response = http.request(
                method, url, json=json, headers={"Authorization": f"Bearer {access_token}"}
            )
    except httpx.HTTPError as error:
        _fail(f"cannot reach the accounts service at {url}: {type(error).__name__}", 2)
    if response.status_code >= 400:
        _fail(f"{url} answered {response.status_code}: {response.text[:_DETAIL_LENGTH_MAX]}", 1)
    return response


def _parsed(response: httpx.Response, model: type[Model]) -> Model:
    try:
        return model.model_validate_json(response.content)
    except ValidationError:
        _fail(f"{response.url} answered something else than {model.__name__}", 2)


def _read_password() -> str:
    """The password from stdin: one line when piped, asked twice unechoed on a terminal."""
    # sys.stdin at call time: click's test runner swaps it for the input it is given.
    if sys.stdin.isatty():
        password: str = click.prompt(
            "password", hide_input=True, confirmation_prompt=True, err=True
        )
        return password
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def _write_qr(uri: str, path: Path) -> None:
    import segno

    # Error correction M: still readable from a slightly blurred screen photo.
    segno.make(uri, error="m").save(str(path), scale=8, border=4)


@click.group()
@click.option(
    "--accounts-url",
    default=None,
    help="Base URL of the accounts service [default: the running bank's].",
)
@operator_token_option(Scope.staff_manage)
@click.pass_context
def staff(context: click.Context, accounts_url: str | None, access_token: str | None) -> None:
    """Add, disable and list the staff who sign in as people (password and TOTP).

    Exit status 1 when the bank refuses, 2 when it cannot be asked."""
    context.obj = (accounts_url or bank_urls(LauncherSettings())["accounts"], access_token)


@staff.command()
@click.option("--email", required=True, help="The person's email: their sign-in name.")
@click.option("--role", required=True, type=click.Choice([role.value for role in StaffRole]))
@click.option("--display-name", default=None, help="How the console names them.")
@click.option(
    "--password",
    default=None,
    help="Their password [default: one line from stdin, or asked for on a terminal].",
)
@click.option(
    "--qr",
    "qr_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write the enrolment QR code here (.png or .svg).",
)
@click.pass_context
def add(
    context: click.Context,
    email: str,
    role: str,
    display_name: str | None,
    password: str | None,
    qr_path: Path | None,
) -> None:
    """Add a staff member and print the otpauth:// URI their authenticator app takes.

    The URI holds their TOTP secret and is shown this once: hand it over privately."""
    if qr_path is not None and qr_path.suffix.lower() not in QR_SUFFIXES:
        raise click.UsageError(f"--qr takes a path ending in {' or '.join(QR_SUFFIXES)}")
    if password is None:
        password = _read_password()
    if len(password) < STAFF_PASSWORD_LENGTH_MIN:
        raise click.UsageError(f"the password needs {STAFF_PASSWORD_LENGTH_MIN} characters")
    body = {"email": email, "role": role, "display_name": display_name, "password": password}
    enrolment = _parsed(_call(context, "POST", STAFF_PATH, body), StaffEnrolmentOut)
    if qr_path is not None:
        _write_qr(enrolment.otpauth_uri, qr_path)
    click.echo(f"added {enrolment.staff.email} ({enrolment.staff.role})")
    click.echo(enrolment.otpauth_uri)
    if qr_path is not None:
        click.echo(f"QR code: {qr_path}")


@staff.command()
@click.option("--email", required=True, help="The staff member's email.")
@click.pass_context
def disable(context: click.Context, email: str) -> None:
    """Disable a staff member: they can no longer sign in (again: nothing changes)."""
    member = _parsed(_call(context, "POST", STAFF_DISABLE_PATH, {"email": email}), StaffMemberOut)
    click.echo(f"disabled {member.email} at {member.disabled_at:%Y-%m-%dT%H:%M:%SZ}")


@staff.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: {staff: [...]}.")
@click.pass_context
def list_staff(context: click.Context, as_json: bool) -> None:
    """Every staff member, disabled ones too, by email."""
    listed = _parsed(_call(context, "GET", STAFF_PATH), StaffList)
    if as_json:
        click.echo(listed.model_dump_json(indent=2))
        return
    for member in listed.staff:
        state = "enabled" if member.disabled_at is None else "disabled"
        name = member.display_name or ""
        click.echo(f"{member.email}\t{member.role}\t{state}\t{name}".rstrip())
