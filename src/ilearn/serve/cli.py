"""`ilearn serve` and `ilearn keys ...`: the HTTP service and its API keys (registered by `ilearn.cli`).

Nothing here imports FastAPI until a command runs, so the core install can build the parser.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import asdict, fields

from ilearn.cli_settings import field_docs
from ilearn.serve.settings import ServeSettings

logger = logging.getLogger(__name__)


def _serve_option(parser: argparse.ArgumentParser, name: str, flag: str) -> None:
    """An option for a ServeSettings field: its type, default and help come from the field."""
    field = {f.name: f for f in fields(ServeSettings)}[name]
    kind = typing.get_type_hints(ServeSettings)[name]
    help_text = " ".join(field_docs(ServeSettings)[name].split())
    if kind is bool:
        parser.add_argument(flag, dest=f"serve_{name}", action="store_true", help=help_text)
    else:
        parser.add_argument(flag, dest=f"serve_{name}", type=kind, default=field.default, metavar=name.upper(),
                            help=f"{help_text} (default: {field.default!r})")


def serve_settings(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(**{f.name: getattr(args, f"serve_{f.name}") for f in fields(ServeSettings)
                            if hasattr(args, f"serve_{f.name}")})


def add_parsers(sub: argparse._SubParsersAction, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `serve` and `keys` to the `ilearn` command (`common` adds the deployment options)."""
    serve = sub.add_parser("serve", help="the HTTP service: native /v1 API, OpenAI-compatible chat, /docs")
    common(serve)
    for name, flag in [("host", "--host"), ("port", "--port"), ("threads", "--threads-http"),
                       ("keys_path", "--keys"), ("model_name", "--served-model-name"),
                       ("allow_remote_images", "--allow-remote-images"), ("max_body_bytes", "--max-body-bytes"),
                       ("shutdown_timeout_s", "--shutdown-timeout"), ("reports_dir", "--reports")]:
        _serve_option(serve, name, flag)
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes on one port, each with its own home folder <home>/worker-<i> (only 1 "
                            "on the SQLite store: each process has its own index; several on a PostgreSQL store)")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="API keys of the service: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="action", required=True)
    create = keys_sub.add_parser("create", help="a new key (printed once; only its hash is stored)")
    common(create)
    _serve_option(create, "keys_path", "--keys")
    create.add_argument("--robot", required=True, help="the robot (or site) the key belongs to")
    create.add_argument("--role", choices=["robot", "admin"], default="robot",
                        help="robot: talk and give feedback; admin: also learn, promote, roll back, forget")
    create.add_argument("--name", default="", help="a note on what the key is for")
    create.add_argument("--rate", type=int, default=None, help="requests a minute (default 120)")
    create.add_argument("--max-body-bytes", type=int, default=None, help="largest request body")
    create.add_argument("--max-image-bytes", type=int, default=None, help="largest image")
    create.set_defaults(func=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="the keys (never their secrets)")
    common(listing)
    _serve_option(listing, "keys_path", "--keys")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once")
    common(revoke)
    _serve_option(revoke, "keys_path", "--keys")
    revoke.add_argument("key_id", help="the key's id (the 12 hex digits after ilk_)")
    revoke.set_defaults(func=cmd_keys_revoke)


def _keys(args: argparse.Namespace):
    from ilearn.cli_settings import load_config
    from ilearn.serve.keys import KeyStore, keys_location

    config = load_config(args)
    return KeyStore(keys_location(serve_settings(args).keys_path, config.store_url, config.home_path))


def cmd_keys_create(args: argparse.Namespace) -> int:
    from ilearn.serve.keys import KeyLimits

    given = {"rate_per_minute": args.rate, "max_body_bytes": args.max_body_bytes,
             "max_image_bytes": args.max_image_bytes}
    limits = KeyLimits(**{k: v for k, v in given.items() if v is not None})
    row, token = _keys(args).create(args.robot, args.role, name=args.name, limits=limits)
    print(f"created {row.role} key {row.id} for robot {row.robot!r}; keep it, it is not shown again:", file=sys.stderr)
    print(token)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    for key in _keys(args).list(include_revoked=args.all):
        state = "revoked" if key.revoked else "active"
        print(json.dumps({"id": key.id, "robot": key.robot, "role": key.role, "name": key.name, "state": state,
                          "rate_per_minute": key.limits.rate_per_minute,
                          "max_body_bytes": key.limits.max_body_bytes,
                          "max_image_bytes": key.limits.max_image_bytes, "created": key.created}))
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    key = _keys(args).revoke(args.key_id)
    print(f"revoked key {key.id} of robot {key.robot!r}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ilearn.errors import InvalidInput, require_package

    require_package("fastapi", extra="serve")
    require_package("uvicorn", extra="serve")
    import uvicorn

    from ilearn.cli_settings import load_config
    from ilearn.serve.keys import KeyStore, keys_location

    config = load_config(args)
    settings = serve_settings(args)
    if args.workers < 1:
        raise InvalidInput("--workers must be >= 1")
    if args.workers > 1 and not config.store_url.startswith(("postgresql://", "postgres://")):
        raise InvalidInput("--workers: on the SQLite store one process serves (each process would keep its own "
                           "vector index); give a PostgreSQL store (--store postgresql://...) for several workers")
    keys = KeyStore(keys_location(settings.keys_path, config.store_url, config.home_path))
    try:
        if not keys.list():
            row, token = keys.create("local", "admin", name="made by the first `ilearn serve`")
            print(f"no API keys yet: made admin key {row.id} for robot 'local' (shown once; more with "
                  f"`ilearn keys create`):\n{token}", file=sys.stderr)
    finally:
        keys.close()
    log_level = "info" if args.verbose else "warning"
    if args.workers > 1:
        os.environ[_WORKER_SPEC] = json.dumps({"config": config.to_dict(), "settings": asdict(settings),
                                               "workers": args.workers})
        uvicorn.run("ilearn.serve.cli:worker_app", factory=True, workers=args.workers, host=settings.host,
                    port=settings.port, log_level=log_level, timeout_graceful_shutdown=int(settings.shutdown_timeout_s))
        return 0
    from ilearn.runtime import build_runtime
    from ilearn.serve.app import create_app

    app = create_app(build_runtime(config), settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level,
                timeout_graceful_shutdown=int(settings.shutdown_timeout_s))
    return 0


_WORKER_SPEC = "ILEARN_SERVE_WORKER"
"""The environment variable that hands `ilearn serve --workers N` settings to its worker processes."""


def worker_app():
    """The app of one worker process of `ilearn serve --workers N` (uvicorn's factory): the settings from the
    parent, and a home folder of its own, `<home>/worker-<i>`, the first one no other process holds (a worker that
    uvicorn restarts takes the one its predecessor left)."""
    from ilearn.config import Config
    from ilearn.memory.lock import HomeLock, HomeLocked
    from ilearn.runtime import build_runtime
    from ilearn.serve.app import create_app

    spec = json.loads(os.environ[_WORKER_SPEC])
    config = Config.from_dict(spec["config"])
    settings = ServeSettings(**spec["settings"])
    for i in range(2 * spec["workers"]):
        home = config.home_path / f"worker-{i}"
        lock = HomeLock(home)
        try:
            lock.acquire()
        except HomeLocked:
            continue
        try:  # held until the runtime's memory holds it too
            logger.info("worker %d serves with home %s", os.getpid(), home)
            return create_app(build_runtime(config.override(home=str(home))), settings, worker=home.name)
        finally:
            lock.release()
    raise RuntimeError(f"no free worker home under {config.home_path}: {2 * spec['workers']} are held")


__all__ = ["add_parsers", "serve_settings"]
