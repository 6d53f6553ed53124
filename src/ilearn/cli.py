"""The `ilearn` command: chat, demo, experiment, learn, events, models, serve, keys."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ilearn.cli_settings import add_set_option, add_setting, load_config
from ilearn.config import Config
from ilearn.errors import ILearnError, InvalidInput, NotFound, SessionClosed
from ilearn.memory.lock import os_reason
from ilearn.types import EventStatus

if TYPE_CHECKING:
    from ilearn.learning.registry import ModelRegistry
    from ilearn.types import ModelVersion

logger = logging.getLogger("ilearn")

def _common(parser: argparse.ArgumentParser) -> None:
    """The options every deployment command takes; each one's help and checks come from its typed setting."""
    add_setting(parser, "home", "--home")
    parser.add_argument("--config", default=None, help="JSON settings file (see ilearn.config)")
    add_setting(parser, "store", "--store")
    add_setting(parser, "model.backend", "--model")
    add_setting(parser, "model.path", "--model-path")
    add_setting(parser, "model.threads", "--threads")
    add_setting(parser, "model.device", "--device")
    add_setting(parser, "retrieval.enabled", "--no-retrieval")
    add_set_option(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: iLearn's progress logs; -vv: debug logs of every library")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ilearn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="talk to the assistant in the terminal; start a line with an image path")
    _common(chat)
    chat.add_argument("--user", default="user", help="who is talking")
    chat.set_defaults(func=cmd_chat)

    events = sub.add_parser("events", help="history events: list, export as datasets, forget a user")
    events_sub = events.add_subparsers(dest="action", required=True)
    ev_list = events_sub.add_parser("list", help="list events")
    _common(ev_list)
    ev_list.add_argument("--user", default=None)
    ev_list.add_argument("--status", default=None, choices=[s.value for s in EventStatus],
                         help="only events with this status")
    ev_list.add_argument("--json", action="store_true", help="one JSON object per line")
    ev_list.set_defaults(func=cmd_events_list)
    ev_export = events_sub.add_parser("export", help="write TRL-ready datasets (sft, dpo, kto, rewards)")
    _common(ev_export)
    ev_export.add_argument("--format", choices=["jsonl", "hf"], default="jsonl")
    ev_export.add_argument("--out", required=True, help="output folder")
    ev_export.add_argument("--user", default=None, help="only this user's events")
    ev_export.set_defaults(func=cmd_events_export)
    ev_forget = events_sub.add_parser("forget", help="delete every trace of a user (sessions, events, vectors)")
    _common(ev_forget)
    ev_forget.add_argument("--user", required=True)
    ev_forget.set_defaults(func=cmd_events_forget)
    ev_review = events_sub.add_parser("review", help="disputed answers waiting for review: list, keep or reject")
    _common(ev_review)
    decide = ev_review.add_mutually_exclusive_group()
    decide.add_argument("--keep", metavar="EVENT", default=None,
                        help="side with this answer: it is shared and the answer it disputes is not")
    decide.add_argument("--reject", metavar="EVENT", default=None, help="delete this answer")
    ev_review.set_defaults(func=cmd_events_review)

    learn = sub.add_parser("learn", help="train a candidate on the events, gate it, promote it if it is better")
    _common(learn)
    add_setting(learn, "learn.recipe", "--recipe")
    add_setting(learn, "learn.trainable", "--trainable")
    add_setting(learn, "learn.max_steps", "--max-steps")
    learn.add_argument("--no-promote", action="store_true", help="only train and gate")
    learn.add_argument("--no-general", action="store_true", help="skip the general (forgetting) set in the gate")
    learn.set_defaults(func=cmd_learn)

    models = sub.add_parser("models", help="model versions: list, promote, rollback, vLLM adapters")
    models_sub = models.add_subparsers(dest="action", required=True)
    m_list = models_sub.add_parser("list", help="every version with its lineage, recipe and gate figures")
    _common(m_list)
    m_list.set_defaults(func=cmd_models_list)
    m_promote = models_sub.add_parser("promote", help="make a version the one that serves ('base' for none)")
    _common(m_promote)
    m_promote.add_argument("version")
    m_promote.set_defaults(func=cmd_models_promote)
    m_rollback = models_sub.add_parser("rollback", help="serve the version that served before the current one")
    _common(m_rollback)
    m_rollback.set_defaults(func=cmd_models_rollback)
    m_adapters = models_sub.add_parser(
        "adapters", help="with model.publish vllm-lora: the adapters the vLLM server holds for this deployment, "
                         "and --sweep to unload those of versions that are not active (left by killed workers)")
    _common(m_adapters)
    m_adapters.add_argument("--sweep", action="store_true",
                            help="unload every adapter of a version that is not the active one (and stale checks)")
    m_adapters.set_defaults(func=cmd_models_adapters)

    from ilearn.evaluation.experiment_cli import add_experiment_parser

    add_experiment_parser(sub)

    from ilearn.serve.cli import add_parsers as add_serve_parsers

    add_serve_parsers(sub, _common)

    demo = sub.add_parser("demo", help="a scripted conversation on the embedded default model")
    _common(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


CHAT_HELP = """Type a message and press Enter. Start a line with an image path to show an image, e.g.
  photos/bottle.png what is this?
Commands: /close (end the dialogue and learn from it), /user NAME, /quit."""


def _split_image(line: str) -> tuple[str | None, str]:
    """`path/to/img.png what is this?` -> (path, text) when the first word (quoted if it has spaces) is a file."""
    line = line.strip()
    if line[:1] in ("'", '"'):
        try:
            first, *rest = shlex.split(line)
        except ValueError:
            return None, line
        rest_text = " ".join(rest)
    else:
        first, _, rest_text = line.partition(" ")
    path = Path(first).expanduser()
    try:
        is_file = bool(first) and path.is_file()
    except OSError:  # e.g. a very long word is no file name
        is_file = False
    return (str(path), rest_text.strip()) if is_file else (None, line)


def _undecodable(line: str) -> bool:
    """Whether a line read with errors="surrogateescape" held bytes that are not UTF-8 (or lone surrogates)."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def run_chat(assistant, user: str, stdin: TextIO, stdout: TextIO) -> int:
    """The chat loop over any text streams (the terminal, or a script in tests)."""
    session_id: str | None = None
    interactive = stdin.isatty()
    print(CHAT_HELP, file=stdout)
    while True:
        if interactive:
            print(f"{user}> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            break
        line = line.strip()
        if _undecodable(line):
            print("[error] that line is not valid UTF-8 text; it was skipped", file=stdout)
            continue
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/close":
            if session_id:
                events = assistant.close_session(session_id)
                print(f"[dialogue closed; {len(events)} event(s) learned]", file=stdout)
                session_id = None
            continue
        if line.startswith("/user "):
            if session_id:
                assistant.close_session(session_id)
            user, session_id = line.split(maxsplit=1)[1].strip(), None
            print(f"[now talking to {user}]", file=stdout)
            continue
        image, text = _split_image(line)
        if not interactive:
            print(f"{user}> {line}", file=stdout)
        try:
            reply = assistant.respond(user, text or "What is this?", image=image, session_id=session_id)
        except (NotFound, SessionClosed) as exc:  # e.g. the user was forgotten meanwhile: a new dialogue starts
            print(f"[error] {exc}; the next line starts a new dialogue", file=stdout)
            session_id = None
            continue
        except ILearnError as exc:
            print(f"[error] {exc}", file=stdout)
            continue
        session_id = reply.session_id
        print(f"assistant> {reply.text}", file=stdout)
        for i, ref in enumerate(reply.references, 1):
            print(f"  reference [{i}]: asked {ref.question!r}, answer {ref.answer!r} (score {ref.score:.2f})",
                  file=stdout)
    if session_id:
        events = assistant.close_session(session_id)
        print(f"[dialogue closed; {len(events)} event(s) learned]", file=stdout)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from ilearn.assistant import Assistant

    stdin = sys.stdin
    if hasattr(stdin, "reconfigure"):
        stdin.reconfigure(errors="surrogateescape")  # a line of bad bytes is skipped with an error, not fatal
    with Assistant.from_config(load_config(args)) as assistant:
        return run_chat(assistant, args.user, stdin, sys.stdout)


def _store(args: argparse.Namespace):
    """The settings and the existing store of the deployment (NotFound when there is none yet)."""
    from ilearn.runtime import open_store

    config = load_config(args)
    return config, open_store(config, create=False)


def cmd_events_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    _, store = _store(args)
    if args.user is not None and not store.has_user(args.user):
        raise NotFound(f"unknown user {args.user!r}")
    status = EventStatus(args.status) if args.status else None
    events = store.list_events(user_id=args.user, status=status)
    for e in events:
        if args.json:
            print(json.dumps(asdict(e), default=str))
        else:
            rejected = f"  (not: {', '.join(e.rejected)})" if e.rejected else ""
            print(f"{e.id}  {e.user_id:<12} {e.status.value:<11} {e.scope.value:<7} "
                  f"{e.question!r} -> {e.answer!r}{rejected}")
    if not args.json:
        print(f"{len(events)} event(s)")
    return 0


def cmd_events_export(args: argparse.Namespace) -> int:
    from ilearn.learning.datasets import export

    config, store = _store(args)
    if args.user is not None and not store.has_user(args.user):
        raise NotFound(f"unknown user {args.user!r}")
    try:
        snapshot = export(store.list_events(user_id=args.user), store, args.out, fmt=args.format,
                          learn=config.learn)
    except OSError as exc:
        raise InvalidInput(f"cannot write the export to {args.out}: {os_reason(exc)}") from None
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v} rows" for k, v in snapshot["counts"].items()))
    return 0


def _maintenance_memory(config: Config, store):
    """The deployment's retrieval memory as its index was built: the embedders and weights recorded beside the
    index replace the settings' (so a maintenance command never rebuilds the index with other embedders)."""
    from ilearn.memory.retrieval import recorded_settings
    from ilearn.runtime import build_memory

    recorded = recorded_settings(config.home_path)
    if recorded:
        config = config.override(retrieval=recorded)
    return build_memory(config, store)


def cmd_events_forget(args: argparse.Namespace) -> int:
    from ilearn.assistant import forget_user_data
    from ilearn.learning.registry import ModelRegistry

    config, store = _store(args)
    try:
        if not store.has_user(args.user):
            raise NotFound(f"unknown user {args.user!r}")
        memory = _maintenance_memory(config, store)
        try:
            report = forget_user_data(store, memory, ModelRegistry(store, config.home_path), config.home_path,
                                      args.user)
        finally:
            memory.close()
    finally:
        store.close()
    print(report.summary())
    trained = report.versions.trained if report.versions is not None else []
    if trained and config.model.publish == "vllm-lora":
        print(_revoke_adapters(config, trained))
    return 0


def _revoke_adapters(config: Config, version_ids: list[str]) -> str:
    """Unload from the vLLM server every adapter of `version_ids` (forgotten versions) that a worker loaded; a
    line that says what was done. The forget stands whatever the server does: each worker also unloads its own
    at its next store read."""
    from ilearn.models.openai import RemoteModelError
    from ilearn.models.vllm_publish import VLLMAdapters

    try:
        names = VLLMAdapters.from_config(config.model).unload_versions(version_ids)
    except RemoteModelError as exc:
        return f"  the vLLM server's adapters were not swept ({exc}); each worker unloads its own at its next turn"
    return (f"  their adapters unloaded from the vLLM server: {', '.join(names)}" if names
            else "  the vLLM server held no adapter of them")


def cmd_events_review(args: argparse.Namespace) -> int:
    config, store = _store(args)
    try:
        memory = _maintenance_memory(config, store)
        try:
            if args.keep or args.reject:
                event = memory.resolve(args.keep or args.reject, keep=bool(args.keep))
                verb = "kept: shared with every user" if args.keep else "rejected: deleted"
                print(f"{event.id} ({event.user_id}: {event.answer!r}) {verb}")
                return 0
            queue = memory.review_queue()
            for event, disputed in queue:
                against = ", ".join(sorted({f"{d.answer!r} ({d.user_id})" for d in disputed})) or "nothing shared now"
                print(f"{event.id}  {event.user_id:<12} {event.question!r} -> {event.answer!r}  disputes {against}")
            print(f"{len(queue)} event(s) waiting for review (resolve with --keep EVENT or --reject EVENT)")
        finally:
            memory.close()
    finally:
        store.close()
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    from ilearn.assistant import Assistant

    config = load_config(args)
    _store(args)[1].close()  # a clear error when there is no deployment yet
    with Assistant.from_config(config) as assistant:
        outcome = assistant.learn(promote=not args.no_promote, general=not args.no_general)
    print(outcome.summary())
    return 0


def _registry(args: argparse.Namespace) -> ModelRegistry:
    from ilearn.learning.registry import ModelRegistry

    config, store = _store(args)
    return ModelRegistry(store, config.home_path)


def cmd_models_list(args: argparse.Namespace) -> int:
    from ilearn.users.tuning import USER_AWARE

    registry = _registry(args)
    versions = registry.list()
    print(f"serving: {registry.active_id()}")
    for v in versions:
        gate = v.metrics.get("gate") or {}
        learning = gate.get("learning") or {}
        figures = f"held-out {learning.get('active', 0):.2f} -> {learning.get('candidate', 0):.2f}" if learning else ""
        naming = gate.get("specificity") or {}
        if naming:
            figures += f"  false naming {naming['active']:.2f} -> {naming['candidate']:.2f}"
        if v.metrics.get("forgotten"):
            figures += "  trained on a forgotten user's events: weights deleted"
        if v.metrics.get(USER_AWARE):
            figures += "  user-aware (fits its answers to the user's tag)"
        print(f"{v.id}  {v.status.value:<9} {v.recipe:<9} parent={v.parent or 'base':<16} "
              f"events={len(v.event_ids):<5} {figures}")
    if not versions:
        print("no trained versions yet (run `ilearn learn`)")
    return 0


def _change_active(args: argparse.Namespace, change: Callable[[ModelRegistry], ModelVersion]) -> ModelVersion:
    """Promote or roll back in the registry: the serving processes take the new active version at their next
    turn (their store read of it). With `model.publish` "vllm-lora" the vLLM server must first load its adapter
    (`VLLMAdapters.check`) before the change commits (`ModelRegistry.change_active`, as the service's routes): a
    version the server refuses never becomes active."""
    from ilearn.learning.registry import ModelRegistry

    config, store = _store(args)
    registry = ModelRegistry(store, config.home_path)
    if config.model.publish != "vllm-lora":
        return change(registry)
    from ilearn.models.vllm_publish import VLLMAdapters

    adapters = VLLMAdapters.from_config(config.model)
    return registry.change_active(lambda: change(registry), serve=lambda v: adapters.check(v.id, v.path))


def cmd_models_promote(args: argparse.Namespace) -> int:
    version = _change_active(args, lambda registry: registry.promote(args.version))
    print(f"promoted {version.id}: it serves from the next turn on")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    version = _change_active(args, lambda registry: registry.rollback())
    print(f"rolled back: {version.id} serves from the next turn on")
    return 0


def cmd_models_adapters(args: argparse.Namespace) -> int:
    """The adapters the vLLM server holds for this deployment's versions, each with its version's state; with
    `--sweep`, the stale ones (`loaded_adapters`: a retired version's, a check's, or the active version's with no
    live worker's lease on it) unloaded. A worker that still serves a retired version (the
    server refused the active one) has its next turns fail until it serves the active one: sweep when the
    workers' metrics show the active version."""
    from ilearn.learning.registry import ModelRegistry
    from ilearn.models.vllm_publish import ADAPTER_LEASE, VLLMAdapters, drop_spent_leases, loaded_adapters

    if load_config(args).model.publish != "vllm-lora":
        raise InvalidInput("adapters are published only with model.publish vllm-lora (and the openai backend "
                           "pointed at the vLLM server)")
    config, store = _store(args)
    try:
        registry = ModelRegistry(store, config.home_path)
        adapters = VLLMAdapters.from_config(config.model)
        active = registry.active_id()
        loaded = adapters.loaded()
        leases = store.list_leases(ADAPTER_LEASE)
        ours = loaded_adapters(loaded, registry, active=active, leases=leases)
        stale = [a.name for a in ours if a.stale]
        servers = "the vLLM server holds" if len(adapters.base_urls) == 1 else \
            f"the {len(adapters.base_urls)} vLLM replicas hold"
        print(f"serving: {active}; {servers} {len(ours)} iLearn adapter(s)")
        for a in ours:
            print(f"{a.name}  {'check, ' if a.check else ''}{a.state}{'  stale' if a.stale else ''}")
        if args.sweep:
            unloaded, failed = adapters.unload_each(stale)
            drop_spent_leases(store, leases, unloaded, loaded)
            print(f"unloaded {len(unloaded)} stale adapter(s){': ' + ', '.join(unloaded) if unloaded else ''}")
            if failed:
                print(f"not unloaded: {'; '.join(f'{name} ({reason})' for name, reason in failed)}")
                return 1
        elif stale:
            print(f"{len(stale)} stale: `ilearn models adapters --sweep` unloads them")
    finally:
        store.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ilearn.demo import run_demo

    return run_demo(load_config(args), sys.stdout)


def configure_logging(verbosity: int) -> None:
    """Warnings only by default (no library INFO lines); -v adds iLearn's INFO logs, -vv every library's DEBUG."""
    logging.basicConfig(level=logging.DEBUG if verbosity >= 2 else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if verbosity == 1:
        logging.getLogger("ilearn").setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "verbose", 0))
    try:
        return int(args.func(args) or 0)
    except ILearnError as exc:
        print(f"ilearn: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the disk filled up, or the home is read-only, under a library's write
        print(f"ilearn: error: {os_reason(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "load_config", "main", "run_chat"]
