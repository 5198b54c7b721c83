"""``peephole web``: the door's web page, and its password.

The web stack (FastAPI, uvicorn) is imported only when one of these commands runs, so
every other command starts as fast as before.
"""

from __future__ import annotations

import sys

import click

from device.cli.app import AppContext, CommandGroup, pass_app


@click.group(cls=CommandGroup, invoke_without_command=True)
@click.option("--host", help="Listen on this address (default: [web] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen on this port ([web] port).")
@click.pass_context
def web(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Serve the door's web page: visits, people and status (docs/web.md).

    A process of its own beside 'peephole run', so the page never slows the camera.
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(AppContext)
    assert app is not None
    if host is not None:
        app.config.web.host = host
    if port is not None:
        app.config.web.port = port
    app.config.web.validate()
    from device.web.server import serve

    serve(app.config, app.models)


@web.command("set-password")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input.")
@pass_app
def set_password(app: AppContext, from_stdin: bool) -> None:
    """Set the page's password (stored only as a slow scrypt hash, mode 0600)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    from device.web.passwords import store_password

    path = app.config.web.resolved_password_file()
    store_password(path, password)
    click.echo(f"password set in {path}; a running 'peephole web' uses it at the next login")
