"""``tradeloop tokens``: API tokens and browser sessions, for admins on the server.

    tradeloop tokens list [NAME]            every token (or NAME's): id, user, label, created, revoked
    tradeloop tokens create NAME [--label]  print a new token for NAME (shown only once)
    tradeloop tokens revoke TOKEN_ID        revoke it and end its browser sessions
    tradeloop tokens purge-sessions         delete expired browser sessions
"""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

tokens = AppGroup("tokens", help="API tokens and browser sessions (admin).")


def _db():
    return current_app.extensions["tradeloop"].db


@tokens.command("list")
@click.argument("name", required=False)
def tokens_list(name):
    """List tokens (never the tokens themselves), of every user or of NAME."""
    import sqlalchemy as sa
    from app.tables import api_tokens, users
    q = sa.select(api_tokens.c.id, users.c.name, api_tokens.c.label, api_tokens.c.created_at,
                  api_tokens.c.revoked_at).join(users, users.c.id == api_tokens.c.user_id).order_by(api_tokens.c.id)
    if name:
        q = q.where(users.c.name == name)
    with _db().read() as conn:
        rows = conn.execute(q).fetchall()
    if name and not rows:
        raise click.ClickException(f"no tokens for {name!r}")
    for r in rows:
        state = f"revoked {r.revoked_at:%Y-%m-%dT%H:%M:%S}Z" if r.revoked_at else "live"
        click.echo(f"{r.id}\t{r.name}\t{r.label or '-'}\tcreated {r.created_at:%Y-%m-%dT%H:%M:%S}Z\t{state}")


@tokens.command("create")
@click.argument("name")
@click.option("--label", default=None, help="What the token is for.")
def tokens_create(name, label):
    """Print a new API token for user NAME (shown only once)."""
    from app import auth
    with _db().transaction() as conn:
        user = auth.user_by_name(conn, name)
        if user is None:
            raise click.ClickException(f"no user {name!r}")
        click.echo(auth.create_token(conn, user.id, label)["token"])


@tokens.command("revoke")
@click.argument("token_id", type=int)
def tokens_revoke(token_id):
    """Revoke a token by id; its browser sessions end at once."""
    from app import auth, errors
    try:
        with _db().transaction() as conn:
            out = auth.revoke_token(conn, token_id)
    except errors.NotFound as exc:
        raise click.ClickException(exc.message)
    click.echo(f"revoked token {token_id}; ended {out['sessions_ended']} browser session(s)")


@tokens.command("purge-sessions")
def tokens_purge_sessions():
    """Delete browser sessions past their idle or absolute timeout."""
    from app import sessions
    with _db().transaction() as conn:
        n = sessions.purge_expired(conn, idle_seconds=int(current_app.config["SESSION_IDLE_TIMEOUT_SECONDS"]))
    click.echo(f"purged {n} expired session(s)")
