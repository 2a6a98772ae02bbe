"""Basic auth for an IndeX session's Ingress: a password made for the session and shown to
the user once, and the htpasswd line ingress-nginx checks it against.

The password is never written anywhere (not the state store, not a log, not a file);
only its bcrypt hash goes into the session's Secret. bcrypt, as helm's `htpasswd` gives
NVIDIA's chart, and ingress-nginx accepts it.
"""

from __future__ import annotations

import secrets


def new_password() -> str:
    """22 URL-safe characters (128 bits): typed once from the terminal, or pasted."""
    return secrets.token_urlsafe(16)


def htpasswd(user: str, password: str) -> str:
    if not user or ":" in user:
        raise ValueError(f"a basic-auth user name cannot be empty or hold ':' ({user!r})")
    import bcrypt  # paramiko's own dependency: always installed

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    return f"{user}:{hashed}"


def check(line: str, user: str, password: str) -> bool:
    """Whether `line` (an htpasswd line) accepts `user` with `password`."""
    import bcrypt

    name, _, hashed = line.strip().partition(":")
    return name == user and bcrypt.checkpw(password.encode(), hashed.encode())
