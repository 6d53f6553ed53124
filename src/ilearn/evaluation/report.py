"""The experiment report folder: report.json (versioned), report.md, PNG plots, and per-round resume files.

Files written by `write_report(result, out_dir)`::

    out_dir/report.json            the results, schema below
    out_dir/report.md              the tables (one row per round, like the papers' tables)
    out_dir/learning_curves.png    accuracy and task completion per round, one line per method
    out_dir/metrics.png            every rate metric per round (grouped bars)
    out_dir/rounds/<key>.json      one file per finished round (`RoundCache`; key = name by default)

report.json, ``schema_version`` 1::

    {
      "schema_version": 1,
      "scenario": "pharmacy" | "reference-game" | "objects",
      "model": str,                    # model backend / version the run started from
      "seed": int,
      "created": str,                  # ISO 8601 time the report was written (added when missing)
      "settings": {...},               # optional: rounds, users, quick, ...
      "rounds": [                      # one object per scored round, in the order they were run
        {
          "name": str,                 # "R1", "R2", "R3", "R3+retrieval"; or "round0".."roundN"
          "method": str,               # "base", "sft", "reinforce", "kto", ...
          "retrieval": bool,
          "n_interactions": int,       # scored (held-out) interactions
          "accuracy": float | null,    # first answer right, 0..1
          "task_completion": float | null,
          "turns_per_task": float | null,
          "clarification_rate": float | null,
          "rouge1_f1": float | null,
          "general_accuracy": float | null,   # on the general set (forgetting)
          "latency_ms_p50": float | null,
          "prompt_tokens_mean": float | null,
          ...                          # any other metric (rouge1_precision, bertscore_f1, decoder, ...)
        }
      ],
      ...                              # anything else the runner adds
    }

A metric that does not apply is null, never missing: `normalise_round` fills every required key.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ilearn.errors import InvalidInput

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ROUND_KEYS: tuple[str, ...] = (
    "name", "method", "retrieval", "n_interactions", "accuracy", "task_completion", "turns_per_task",
    "clarification_rate", "rouge1_f1", "general_accuracy", "latency_ms_p50", "prompt_tokens_mean",
)
TOP_KEYS: tuple[str, ...] = ("schema_version", "scenario", "model", "seed", "rounds")
RATE_KEYS: tuple[str, ...] = ("accuracy", "task_completion", "clarification_rate", "rouge1_f1", "general_accuracy")
FILES: tuple[str, ...] = ("report.json", "report.md", "learning_curves.png", "metrics.png")
_HEADERS = {"name": "round", "method": "method", "retrieval": "retrieval", "n_interactions": "n",
            "accuracy": "accuracy", "task_completion": "completion", "turns_per_task": "turns/task",
            "clarification_rate": "clarify", "rouge1_f1": "ROUGE-1 F1", "general_accuracy": "general",
            "latency_ms_p50": "p50 ms", "prompt_tokens_mean": "prompt tok"}


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become null, tuples lists, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def normalise_round(round_: dict[str, Any]) -> dict[str, Any]:
    """A round with every required key (null where missing), `name` and `method` checked."""
    if not isinstance(round_, dict):
        raise InvalidInput(f"a round must be a dict, not {type(round_).__name__}")
    if not round_.get("name") or not isinstance(round_["name"], str):
        raise InvalidInput("every round needs a non-empty string 'name'")
    out = {key: round_.get(key) for key in ROUND_KEYS}
    out["method"] = out["method"] or "base"
    out["retrieval"] = bool(out["retrieval"])
    out.update({k: v for k, v in round_.items() if k not in out})
    return _clean(out)


def build_report(result: dict[str, Any]) -> dict[str, Any]:
    """The report.json object for a result: required keys checked, rounds normalised, version set."""
    missing = [k for k in ("scenario", "model", "seed", "rounds") if k not in result]
    if missing:
        raise InvalidInput(f"the result lacks {', '.join(missing)}")
    if not isinstance(result["rounds"], (list, tuple)):
        raise InvalidInput("'rounds' must be a list of round dicts")
    rounds = [normalise_round(r) for r in result["rounds"]]
    keys = [(r["name"], r["method"], r["retrieval"]) for r in rounds]
    if len(set(keys)) != len(keys):
        raise InvalidInput(f"rounds must be unique by (name, method, retrieval): {keys}")
    report = {"schema_version": SCHEMA_VERSION, "scenario": result["scenario"], "model": result["model"],
              "seed": result["seed"],
              "created": result.get("created") or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
              "rounds": rounds}
    report.update({k: _clean(v) for k, v in result.items() if k not in report and k != "schema_version"})
    return report


def _fmt(value: Any, key: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if key in RATE_KEYS:
            return f"{100 * value:.1f}"
        return f"{value:.1f}" if key != "turns_per_task" else f"{value:.2f}"
    return str(value)


def format_table(rounds: Sequence[dict[str, Any]], *, markdown: bool = False) -> str:
    """A table of the rounds (rates in percent) for the console, or as Markdown."""
    rows = [[_fmt(r.get(k), k) for k in ROUND_KEYS] for r in rounds]
    headers = [_HEADERS[k] for k in ROUND_KEYS]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _markdown(report: dict[str, Any]) -> str:
    rounds = report["rounds"]
    out = [f"# iLearn experiment: {report['scenario']}", "",
           f"model `{report['model']}`, seed {report['seed']}, report schema v{report['schema_version']}, "
           f"written {report['created']}.", "",
           "Rates (accuracy, completion, clarify, ROUGE-1 F1, general) are percentages; accuracy is the first "
           "answer being right on held-out interactions (new views, new users).", "",
           "## Rounds", "", format_table(rounds, markdown=True), ""]
    extra = sorted({k for r in rounds for k, v in r.items()
                    if k not in ROUND_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if extra:
        out += ["## More metrics", "", "| round | " + " | ".join(extra) + " |",
                "|" + "|".join(" --- " for _ in range(len(extra) + 1)) + "|"]
        out += ["| " + r["name"] + " | " + " | ".join(_fmt(r.get(k), k) for k in extra) + " |" for r in rounds]
        out.append("")
    methods = list(dict.fromkeys(r["method"] for r in rounds))
    if len(methods) > 1 and len({r["name"] for r in rounds}) < len(rounds):  # ReSpect-style: rounds x methods
        for key in ("task_completion", "accuracy"):
            cells = {(r["name"], r["method"]): r.get(key) for r in rounds}
            names = list(dict.fromkeys(r["name"] for r in rounds))
            out += [f"## {_HEADERS[key]} by method", "", "| round | " + " | ".join(methods) + " |",
                    "|" + "|".join(" --- " for _ in range(len(methods) + 1)) + "|"]
            out += ["| " + n + " | " + " | ".join(_fmt(cells.get((n, m)), key) for m in methods) + " |"
                    for n in names]
            out.append("")
    out += ["## Plots", "", "![learning curves](learning_curves.png)", "", "![metrics](metrics.png)", ""]
    return "\n".join(out)


def _round_index(round_: dict[str, Any], position: int) -> int:
    if isinstance(round_.get("round"), int):
        return round_["round"]
    m = re.search(r"(\d+)$", round_["name"])
    return int(m.group(1)) if m else position


def _plots(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rounds = report["rounds"]
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for i, r in enumerate(rounds):
        label = r["method"] + (" + retrieval" if r["retrieval"] else "")
        groups.setdefault(label, []).append((_round_index(r, i), r))
    single_points = all(len(g) == 1 for g in groups.values())
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("accuracy", "task_completion"), strict=True):
        if single_points:  # pharmacy-like: one progression R1 -> R2 -> R3 ...
            ys = [r.get(key) for r in rounds]
            ax.plot(range(len(rounds)), [y if y is not None else float("nan") for y in ys], marker="o")
            ax.set_xticks(range(len(rounds)), [r["name"] for r in rounds])
        else:
            for method, pts in groups.items():
                pts = sorted(pts, key=lambda p: p[0])
                ax.plot([p[0] for p in pts], [p[1].get(key) if p[1].get(key) is not None else float("nan")
                                              for p in pts], marker="o", label=method)
            ax.set_xlabel("round")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend()
        ax.set_title(key.replace("_", " "))
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{report['scenario']} ({report['model']}, seed {report['seed']})")
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rounds) + 3), 4))
    width = 0.8 / len(RATE_KEYS)
    for k, key in enumerate(RATE_KEYS):
        ys = [r.get(key) if r.get(key) is not None else 0.0 for r in rounds]
        ax.bar([i + k * width for i in range(len(rounds))], ys, width, label=key.replace("_", " "))
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rounds))], [r["name"] for r in rounds], rotation=30)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("metrics per round")
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=100)
    plt.close(fig)


def write_report(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and the PNG plots into `out_dir`; returns {file name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(result)
    _atomic_write(out / "report.json", json.dumps(report, indent=2, sort_keys=False) + "\n")
    _atomic_write(out / "report.md", _markdown(report))
    if report["rounds"]:
        _plots(report, out)
    else:
        logger.warning("no rounds: no plots written")
    logger.info("report written to %s", out)
    return {name: out / name for name in FILES if (out / name).exists()}


class RoundCache:
    """Finished rounds saved one file each under out_dir/rounds/, so an interrupted experiment resumes.

    `fingerprint` (the run's settings) is stored once; opening the folder with different settings raises,
    instead of silently mixing rounds of two different runs.
    """

    def __init__(self, out_dir: str | Path, fingerprint: dict[str, Any] | None = None):
        self.dir = Path(out_dir) / "rounds"
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "_run.json"
        if fingerprint is not None:
            wanted = _clean(fingerprint)
            if meta.exists():
                found = json.loads(meta.read_text(encoding="utf-8"))
                if found != wanted:
                    raise InvalidInput(f"{self.dir.parent} holds rounds of a run with other settings "
                                       f"({found}); use another report folder or delete {self.dir}")
            else:
                _atomic_write(meta, json.dumps(wanted, indent=2))

    def _path(self, name: str) -> Path:
        if not name or not re.fullmatch(r"[A-Za-z0-9_.+\-]+", name) or name.startswith("."):
            raise InvalidInput(f"round name {name!r} must be letters, digits, '_', '.', '+' or '-'")
        return self.dir / f"{name}.json"

    def save(self, round_: dict[str, Any], key: str | None = None) -> Path:
        """Store a finished round (atomically) as rounds/<key>.json; `key` defaults to the round's name.

        Give a key when names repeat across methods (reference game: ``key=f"{method}-{name}"``).
        """
        round_ = normalise_round(round_)
        path = self._path(key or round_["name"])
        _atomic_write(path, json.dumps(round_, indent=2) + "\n")
        return path

    def has(self, name: str) -> bool:
        """Whether the round saved under `name` (its key) is already done."""
        return self._path(name).exists()

    def load(self, name: str) -> dict[str, Any] | None:
        """The round saved under `name` (its key), or None."""
        path = self._path(name)
        if not path.exists():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def load_all(self, order: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The saved rounds: those keyed in `order` that exist, in that order; else all of them by key."""
        if order is not None:
            return [r for r in (self.load(n) for n in order) if r is not None]
        names = sorted(p.stem for p in self.dir.glob("*.json") if not p.name.startswith("_"))
        return [r for r in (self.load(n) for n in names) if r is not None]
