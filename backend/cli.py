"""The ``orchard`` command."""

from __future__ import annotations

import argparse
import sys

from backend import __version__


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from backend.config import get_settings

    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    uvicorn.run("backend.main:app", host=host, port=port, reload=args.reload, log_level=settings.log_level)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchard", description="Orchard: a local-first LLM studio.")
    parser.add_argument("--version", action="version", version=f"orchard {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Start the API server (settings from the environment / .env).")
    serve.add_argument("--host", help="Bind address (default: ORCHARD_HOST, 127.0.0.1).")
    serve.add_argument("--port", type=int, help="Port (default: ORCHARD_PORT, 8000).")
    serve.add_argument("--reload", action="store_true", help="Restart on code changes (development).")
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
