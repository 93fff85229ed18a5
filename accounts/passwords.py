"""Argon2id password hashing and the password policy for new accounts."""

from __future__ import annotations

import asyncio
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from common.errors import InvalidInput

# A few passwords people really choose here; the policy rejects them outright.
COMMON_PASSWORDS = frozenset(
    {
        "1234567890",
        "12345678910",
        "0123456789",
        "password123",
        "password1234",
        "qwertyuiop",
        "1qaz2wsx3edc",
        "abc123456789",
        "woaini1314",
        "admin123456",
        "administrator",
        "aaaaaaaaaa",
        "11111111111",
        "88888888888",
    }
)


class Passwords:
    """Hashes and verifies in a worker thread: a memory-hard hash must not stall the event loop."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int, min_length: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
        self.min_length = min_length
        # Verified against when the username is unknown, so both cases take the same time.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._dummy_hash, password) and password_hash is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    def check_policy(self, password: str, *, username: str = "") -> None:
        """Reject weak passwords for new accounts and resets, with a reason a clerk understands."""
        problem = None
        if len(password) < self.min_length:
            problem = f"密码至少需要{self.min_length}个字符"
        elif len(password) > 128:
            problem = "密码不能超过128个字符"
        elif password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
            problem = "密码太常见或太简单，请换一个"
        elif username and username.lower() in password.lower():
            problem = "密码不能包含用户名"
        elif password.isdigit():
            problem = "密码不能全是数字，请加入字母或符号"
        if problem:
            raise InvalidInput(problem, code="password.weak", fields={"password": problem})


def generate_password(length: int = 16) -> str:
    """A random password that is easy to read aloud and type: no 0/O, 1/l/I."""
    alphabet = "".join(ch for ch in string.ascii_letters + string.digits if ch not in "0O1lI")
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if any(c.isdigit() for c in password) and any(c.isalpha() for c in password):
            return password
