"""Under root the embedded PostgreSQL runs as a system user created on first use; on a fresh
machine several processes (the test suite's workers, two launchers) may create it at once."""

import pwd
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from sagabank.localstack import postgres

SYSTEM_USER = postgres.POSTGRES_SYSTEM_USER
Outcomes = list[tuple[int, bool]]
Install = Callable[[Outcomes], "Accounts"]


class Accounts:
    """/etc/passwd as `useradd` and `getpwnam` see it while other processes also write it:
    each of our `useradd` calls meets `outcomes`, in order (exit code, whether the user
    exists afterwards: created by us or by the other process)."""

    def __init__(self, outcomes: Outcomes) -> None:
        self.outcomes = outcomes
        self.exists = False
        self.useradd_calls = 0

    def getpwnam(self, name: str) -> pwd.struct_passwd:
        assert name == SYSTEM_USER
        if not self.exists:
            raise KeyError(name)
        return pwd.struct_passwd((name, "x", 999, 995, "", "/", "/usr/sbin/nologin"))

    def run(self, arguments: list[str], **options: Any) -> subprocess.CompletedProcess[bytes]:
        assert arguments[0] == "useradd"
        assert arguments[-1] == SYSTEM_USER
        code, self.exists = self.outcomes[self.useradd_calls]
        self.useradd_calls += 1
        if code != 0 and options.get("check"):
            raise subprocess.CalledProcessError(code, arguments)
        return subprocess.CompletedProcess(arguments, code, b"", b"useradd: failed")


@pytest.fixture
def accounts(monkeypatch: pytest.MonkeyPatch) -> Callable[[Outcomes], Accounts]:
    """`accounts(outcomes)` puts the fake in place of `useradd` and `getpwnam`."""

    def install(outcomes: Outcomes) -> Accounts:
        fake = Accounts(outcomes)
        monkeypatch.setattr(pwd, "getpwnam", fake.getpwnam)
        monkeypatch.setattr(subprocess, "run", fake.run)
        monkeypatch.setattr(postgres, "USERADD_RETRY_DELAY_SECONDS", 0.0, raising=False)
        return fake

    return install


def test_created_on_first_use(accounts: Install) -> None:
    fake = accounts([(0, True)])
    assert postgres._ensure_system_user().pw_name == SYSTEM_USER
    assert fake.useradd_calls == 1


def test_created_by_another_process_meanwhile(accounts: Install) -> None:
    # useradd exits 9: "user already exists", the other process won.
    fake = accounts([(9, True)])
    assert postgres._ensure_system_user().pw_name == SYSTEM_USER
    assert fake.useradd_calls == 1


def test_retried_while_another_process_holds_the_lock(
    accounts: Callable[[Outcomes], Accounts],
) -> None:
    # useradd exits 1: "cannot lock /etc/passwd; try again later".
    fake = accounts([(1, False), (1, False), (0, True)])
    assert postgres._ensure_system_user().pw_name == SYSTEM_USER
    assert fake.useradd_calls == 3


def test_gives_up_after_a_bounded_number_of_attempts(
    accounts: Callable[[Outcomes], Accounts],
) -> None:
    fake = accounts([(1, False)] * postgres.USERADD_ATTEMPTS_MAX)
    with pytest.raises(RuntimeError, match="useradd: failed"):
        postgres._ensure_system_user()
    assert fake.useradd_calls == postgres.USERADD_ATTEMPTS_MAX
