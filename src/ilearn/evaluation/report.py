"""The experiment report folder: report.json (versioned), report.md, PNG plots, and per-round resume files.

Files written by `write_report(result, out_dir)`::

    out_dir/report.json            the results, schema below
    out_dir/report.md              the tables (one row per round, like the papers' tables)
    out_dir/learning_curves.png    accuracy on taught facts and overall accuracy: one bar per round and method,
                                   with its 95% interval (error bar); the baseline as a dashed line
    out_dir/metrics.png            the other rates (completion, clarify, general, ROUGE-1 F1), one panel each,
                                   bars as above; a metric with the same numbers as one already drawn is left out
    out_dir/rounds/<key>.json      one file per finished round (`RoundCache`; key = name by default)

Every rate is a share in 0..1 in report.json and a percentage in report.md, the printed table and the plots.

report.json, ``schema_version`` 2 (`load_report` reads version 1 too, adding what version 2 added)::

    {
      "schema_version": 2,
      "scenario": "pharmacy" | "reference-game" | "objects",
      "model": str,                    # model backend / version the run started from
      "seed": int,
      "created": str,                  # ISO 8601 time the report was written (added when missing)
      "settings": {...},               # optional: rounds, users, quick, sizes, ...
      "baseline": {...} | absent,      # optional: what a user would pick instead, scored on the same test split:
                                       # {"name": str, "accuracy": float, "n": int, "accuracy_ci": [lo, hi], ...}
      "rounds": [                      # one object per scored round, in the order they were run
        {
          "name": str,                 # "R1", "R2", "R3", "R3+retrieval"; or "round0".."roundN"
          "method": str,               # "base", "sft", "reinforce", "kto", ...
          "retrieval": bool,
          "n_interactions": int,       # scored (held-out) interactions
          "accuracy": float | null,    # first answer right, 0..1
          "accuracy_taught": float | null,      # (v2) the same on interactions about facts taught before
          "n_taught_interactions": int | null,  # (v2) how many scored interactions that is
          "task_completion": float | null,
          "turns_per_task": float | null,
          "clarification_rate": float | null,
          "rouge1_f1": float | null,
          "general_accuracy": float | null,   # on the general set (forgetting)
          "n_general": int | null,     # (v2) general-set questions (settings.sizes.general when not given)
          "latency_ms_p50": float | null,
          "prompt_tokens_mean": float | null,
          "accuracy_ci": [lo, hi] | null,       # (v2) 95% Wilson interval of each share of n trials, 0..1:
          "accuracy_taught_ci": ..., "task_completion_ci": ..., "clarification_rate_ci": ...,
          "general_accuracy_ci": ...,
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
from ilearn.evaluation.metrics import wilson_interval

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
ROUND_KEYS: tuple[str, ...] = (
    "name", "method", "retrieval", "n_interactions", "accuracy", "accuracy_taught", "n_taught_interactions",
    "task_completion", "turns_per_task", "clarification_rate", "rouge1_f1", "general_accuracy", "n_general",
    "latency_ms_p50", "prompt_tokens_mean",
)
TOP_KEYS: tuple[str, ...] = ("schema_version", "scenario", "model", "seed", "rounds")
RATE_KEYS: tuple[str, ...] = ("accuracy", "accuracy_taught", "task_completion", "clarification_rate", "rouge1_f1",
                              "general_accuracy")
SHARE_N: dict[str, str] = {"accuracy": "n_interactions", "accuracy_taught": "n_taught_interactions",
                           "task_completion": "n_interactions", "clarification_rate": "n_interactions",
                           "general_accuracy": "n_general"}
"""Rates that are a share of n trials (and the key of their n): each gets a 95% Wilson interval `<key>_ci`.
ROUGE-1 F1 is a mean of per-answer scores, not a share, so it has none."""
FILES: tuple[str, ...] = ("report.json", "report.md", "learning_curves.png", "metrics.png")
TABLE_COLUMNS: tuple[str, ...] = (
    "name", "method", "retrieval", "n_interactions", "accuracy", "accuracy_ci", "accuracy_taught",
    "accuracy_taught_ci", "n_taught_interactions", "general_accuracy", "general_accuracy_ci", "task_completion",
    "clarification_rate", "rouge1_f1", "turns_per_task", "latency_ms_p50", "prompt_tokens_mean",
)
"""The printed table and report.md's: the protocol's point first (accuracy, and on taught facts, with intervals)."""
_HEADERS = {"name": "round", "method": "method", "retrieval": "retrieval", "n_interactions": "n",
            "accuracy": "accuracy %", "accuracy_ci": "95% CI", "accuracy_taught": "taught facts %",
            "accuracy_taught_ci": "95% CI", "n_taught_interactions": "n taught", "task_completion": "completion %",
            "turns_per_task": "turns/task", "clarification_rate": "clarify %", "rouge1_f1": "ROUGE-1 F1 %",
            "general_accuracy": "general %", "general_accuracy_ci": "95% CI", "n_general": "n general",
            "latency_ms_p50": "p50 ms", "prompt_tokens_mean": "prompt tok"}
_SHARE_SUFFIXES = ("accuracy", "_precision", "_recall", "_f1", "_rate", "_taught")


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
    out = _clean(out)
    for key, n_key in SHARE_N.items():
        rate, n = out.get(key), out.get(n_key)
        ci = wilson_interval(rate, n) if isinstance(rate, (int, float)) and isinstance(n, int) else None
        out[f"{key}_ci"] = [round(ci[0], 6), round(ci[1], 6)] if ci else None
    return out


def _n_general(result: dict[str, Any]) -> int | None:
    sizes = (result.get("settings") or {}).get("sizes") or {}
    n = sizes.get("general") if isinstance(sizes, dict) else None
    return n if isinstance(n, int) and n > 0 else None


def build_report(result: dict[str, Any]) -> dict[str, Any]:
    """The report.json object for a result: required keys checked, rounds normalised, version set."""
    missing = [k for k in ("scenario", "model", "seed", "rounds") if k not in result]
    if missing:
        raise InvalidInput(f"the result lacks {', '.join(missing)}")
    if not isinstance(result["rounds"], (list, tuple)):
        raise InvalidInput("'rounds' must be a list of round dicts")
    n_general = _n_general(result)
    rounds = [normalise_round({**r, "n_general": r.get("n_general") or (n_general if r.get("general_accuracy")
                                                                          is not None else None)})
              if isinstance(r, dict) else normalise_round(r) for r in result["rounds"]]
    keys = [(r["name"], r["method"], r["retrieval"]) for r in rounds]
    if len(set(keys)) != len(keys):
        raise InvalidInput(f"rounds must be unique by (name, method, retrieval): {keys}")
    report = {"schema_version": SCHEMA_VERSION, "scenario": result["scenario"], "model": result["model"],
              "seed": result["seed"],
              "created": result.get("created") or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
              "rounds": rounds}
    report.update({k: _clean(v) for k, v in result.items() if k not in report and k != "schema_version"})
    baseline = report.get("baseline")
    if isinstance(baseline, dict) and isinstance(baseline.get("accuracy"), (int, float)):
        ci = wilson_interval(baseline["accuracy"], baseline.get("n"))
        baseline["accuracy_ci"] = [round(ci[0], 6), round(ci[1], 6)] if ci else None
    return report


def load_report(path: str | Path) -> dict[str, Any]:
    """A report.json (a file or its folder) as the current schema: version 1 reports gain what version 2 added
    (taught-fact keys, `n_general`, the `*_ci` intervals); a newer version than this code knows is refused."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1 or version > SCHEMA_VERSION:
        raise InvalidInput(f"{path}: report schema version {version!r} (this code reads 1 to {SCHEMA_VERSION})")
    return build_report(data)


def _is_share(key: str) -> bool:
    return key in RATE_KEYS or key.endswith(_SHARE_SUFFIXES)


def _fmt(value: Any, key: str, *, markdown: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_ci") and isinstance(value, (list, tuple)) and len(value) == 2:
        low, high = (100 * float(v) for v in value)
        return f"[{low:.1f}, {high:.1f}]" if markdown else f"{low:.1f}-{high:.1f}"
    if isinstance(value, float):
        if _is_share(key) and 0 <= value <= 1:
            return f"{100 * value:.1f}"
        return f"{value:.1f}" if key != "turns_per_task" else f"{value:.2f}"
    return str(value)


def format_table(rounds: Sequence[dict[str, Any]], *, markdown: bool = False) -> str:
    """A table of the rounds for the console, or as Markdown: every rate in percent, the accuracies (overall and
    on taught facts) and general-set accuracy with their 95% Wilson intervals (computed when a round lacks them)."""
    rounds = [r if all(f"{k}_ci" in r for k in SHARE_N) else normalise_round(r) for r in rounds]
    rows = [[_fmt(r.get(k), k, markdown=markdown) for k in TABLE_COLUMNS] for r in rounds]
    headers = [_HEADERS[k] for k in TABLE_COLUMNS]
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def baseline_line(report: dict[str, Any]) -> str | None:
    """One line on the baseline (what a user would pick instead), or None when the report has none."""
    base = report.get("baseline")
    if not isinstance(base, dict) or not isinstance(base.get("accuracy"), (int, float)):
        return None
    ci = _fmt(base.get("accuracy_ci"), "accuracy_ci", markdown=True)
    return (f"What a user would pick instead: {base.get('name', 'baseline')}: {100 * base['accuracy']:.1f}% "
            f"{ci} of {base.get('n', '?')} test pictures" + (f" ({base['note']})" if base.get("note") else "") + ".")


def headline(report: dict[str, Any]) -> list[str]:
    """The lines that say what the protocol is about, before any table (printed and in report.md)."""
    lines = ["Accuracy: the first answer right on held-out interactions (new views, new users). Taught facts: the "
             "same on interactions about facts users taught in earlier rounds, the protocol's point (the others "
             "ask about facts no one taught yet). Rates in percent, 95% Wilson intervals in brackets."]
    base = baseline_line(report)
    if base:
        lines.append(base)
    return lines


def _markdown(report: dict[str, Any]) -> str:
    rounds = report["rounds"]
    out = [f"# iLearn experiment: {report['scenario']}", "",
           f"model `{report['model']}`, seed {report['seed']}, report schema v{report['schema_version']}, "
           f"written {report['created']}.", ""]
    for line in headline(report):
        out += [line, ""]
    out += ["## Rounds", "", format_table(rounds, markdown=True), ""]
    extra = sorted({k for r in rounds for k, v in r.items()
                    if k not in TABLE_COLUMNS and k not in ROUND_KEYS and not k.endswith("_ci")
                    and isinstance(v, (int, float)) and not isinstance(v, bool)})
    if extra:
        out += ["## More metrics", "", "Shares (names ending in accuracy, precision, recall, f1, rate) in percent.",
                "", "| round | " + " | ".join(extra) + " |",
                "|" + "|".join(" --- " for _ in range(len(extra) + 1)) + "|"]
        out += ["| " + r["name"] + " | " + " | ".join(_fmt(r.get(k), k) for k in extra) + " |" for r in rounds]
        out.append("")
    out += _sources_table(rounds)
    lines = together_lines(rounds)
    if lines:
        out += ["## Memory and tuned model together", "",
                "What a deployed robot runs (a tuned model with retrieval: R3+retrieval, or the vision-trained "
                "R3's when `learn` picks that candidate) must be right at least as often as each part alone, "
                "on the same interactions:", "", *(f"- {line}" for line in lines), ""]
        choices = guess_lines(rounds)
        if choices:
            out += ["Whether the memory's guesses may overrule each tuned version, as its held-out events chose "
                    "(`ilearn.learning.guesses`):", "", *(f"- {line}" for line in choices), ""]
    methods = list(dict.fromkeys(r["method"] for r in rounds))
    if len(methods) > 1 and len({r["name"] for r in rounds}) < len(rounds):  # ReSpect-style: rounds x methods
        for key in ("task_completion", "accuracy"):
            cells = {(r["name"], r["method"]): r for r in rounds}
            names = list(dict.fromkeys(r["name"] for r in rounds))
            out += [f"## {_HEADERS[key]} by method", "", "(intervals: the rounds table)", "", "| round | " + " | ".join(methods) + " |",
                    "|" + "|".join(" --- " for _ in range(len(methods) + 1)) + "|"]
            out += ["| " + n + " | " + " | ".join(_fmt(cells[(n, m)].get(key), key) if (n, m) in cells else "-"
                                                  for m in methods) + " |" for n in names]
            out.append("")
    out += ["## Plots", "", "Bars: one per round and method, error bars the 95% Wilson interval.", "",
            "![accuracy](learning_curves.png)", "", "![other rates](metrics.png)", ""]
    return "\n".join(out)


RETRIEVAL_SUFFIX = "+retrieval"


def together(rounds: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The memory and each tuned model together against each alone, interaction by interaction (the fact
    protocol's rounds; [] unless they hold a tuned round with retrieval, e.g. R3+retrieval, and the parts'
    `outcomes`).

    Each round named "<tuned>+retrieval" against <tuned> on the facts taught before <tuned> (what R1 and R2
    taught), and against R2 on the facts taught before R2 (what R1 taught): the same held-out interactions in every
    round (`outcomes` are in one order), so each row counts the interactions the part answered right first and
    together did not (`lost`) and the other way round (`won`). `holds`: together is right at least as often as the
    part. `combined` names the round with retrieval."""
    by_name = {r["name"]: r for r in rounds if r.get("outcomes")}
    taught: set[tuple[str, str]] = set()
    facts: dict[str, set[tuple[str, str]]] = {}
    for r in rounds:  # what was taught before each round: the `taught` of the rounds scored before it
        facts.setdefault(r["name"], set(taught))
        taught |= {(t[0], t[1]) for t in r.get("taught") or []}
    rows = []
    for name, both in by_name.items():
        tuned = name[: -len(RETRIEVAL_SUFFIX)]
        if not name.endswith(RETRIEVAL_SUFFIX) or tuned not in by_name:
            continue
        for part in (tuned, "R2"):
            alone = by_name.get(part)
            if alone is None or len(alone["outcomes"]) != len(both["outcomes"]):
                continue
            pairs = [(bool(a[2]), bool(b[2])) for a, b in zip(alone["outcomes"], both["outcomes"], strict=True)
                     if (a[0], a[1]) in facts[part]]
            if not pairs:
                continue
            right = sum(a for a, _ in pairs), sum(b for _, b in pairs)
            rows.append({"combined": name, "part": part, "n": len(pairs), "part_right": right[0],
                         "together_right": right[1], "lost": sum(a and not b for a, b in pairs),
                         "won": sum(b and not a for a, b in pairs), "holds": right[1] >= right[0]})
    return rows


def together_lines(rounds: Sequence[dict[str, Any]]) -> list[str]:
    """Printed lines of `together`: one per tuned model with retrieval and part, [] when it does not apply."""
    return [f"{t['combined']} against {t['part']} alone on the facts taught before {t['part']}: "
            f"{t['together_right']} against {t['part_right']} of {t['n']} right (lost {t['lost']}, won {t['won']}): "
            f"{'holds' if t['holds'] else 'BELOW ' + t['part']}" for t in together(rounds)]


def guess_lines(rounds: Sequence[dict[str, Any]]) -> list[str]:
    """One printed line per tuned round with retrieval that recorded its version's choice of guesses
    (`ilearn.learning.guesses`): what its held-out events showed and what it chose."""
    out = []
    for r in rounds:
        choice = r.get("guesses")
        if not r.get("retrieval") or not choice:
            continue
        seen = (f"a guess would overrule it on {choice['cases']} of {choice['n_heldout']} held-out events, right "
                f"{choice['guess_right']} times against its {choice['model_right']}" if choice["cases"]
                else f"no guess would overrule it on {choice['n_heldout']} held-out events")
        own = f"right on {choice['right']} of {choice['n_heldout']} held-out events; " if choice.get("right") is not None \
            else ""
        out.append(f"{r['name']}: {own}{seen}: guesses {'on' if choice['allow'] else 'off'}")
    return out


SOURCES = {"model": "the model", "memory": "memory, outright", "memory-guess": "memory, worded as a guess"}


def _sources_table(rounds: Sequence[dict[str, Any]]) -> list[str]:
    """report.md's lines on where each round's first answers came from (`first_answer_sources`), if recorded."""
    if not any(r.get("first_answer_sources") for r in rounds):
        return []
    out = ["## Where the first answers came from", "",
           "Per round: first answers given (right) by the model, by the memory outright (a decisive past answer) and "
           "by the memory as a worded guess (`retrieval.guess_threshold`).", "",
           "| round | " + " | ".join(SOURCES.values()) + " |", "|" + "|".join(" --- " for _ in range(len(SOURCES) + 1)) + "|"]
    for r in rounds:
        counts = r.get("first_answer_sources") or {}
        cells = [f"{c['n']} ({c['right']} right)" if (c := counts.get(k)) else "0" for k in SOURCES]
        out.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _stage_and_variant(round_: dict[str, Any]) -> tuple[str, str]:
    """The round a bar belongs to ("R3", "round2") and the bar's label within it (method, retrieval, and what
    the name adds: "R3 (vision trained)" is R3's bar "sft (vision trained)", not a round of its own)."""
    name = round_["name"]
    m = re.match(r"[A-Za-z_]*\d+", name)
    stage = m.group(0) if m else name
    rest = name[len(stage):] if m else ""
    rest = re.sub(r"\+\s*retrieval", "", rest).strip(" ()+")
    label = round_["method"] + (" + retrieval" if round_["retrieval"] else "") + (f" ({rest})" if rest else "")
    return stage, label


def _bars(ax: Any, rounds: Sequence[dict[str, Any]], key: str, colours: dict[str, Any]) -> None:
    """One bar per round and method (grouped by round), its 95% interval as an error bar, in percent."""
    stages = list(dict.fromkeys(_stage_and_variant(r)[0] for r in rounds))
    per_stage: dict[str, list[tuple[str, dict[str, Any]]]] = {s: [] for s in stages}
    for r in rounds:
        stage, label = _stage_and_variant(r)
        per_stage[stage].append((label, r))
    widest = max(len(v) for v in per_stage.values())
    width = 0.8 / widest
    for i, stage in enumerate(stages):
        group = per_stage[stage]
        for j, (label, r) in enumerate(group):
            x = i + (j - (len(group) - 1) / 2) * width
            value = r.get(key)
            if value is None:
                ax.text(x, 1, "n/a", ha="center", va="bottom", fontsize=7)
                continue
            y = 100 * value
            ci = r.get(f"{key}_ci")
            yerr = [[y - 100 * ci[0]], [100 * ci[1] - y]] if ci else None
            ax.bar(x, y, width * 0.95, color=colours[label], yerr=yerr, capsize=3,
                   error_kw={"elinewidth": 1}, label=label, gid=f"{r['name']}|{label}")
    ax.set_xticks(range(len(stages)), stages)
    ax.set_ylim(0, 105)
    ax.set_ylabel("%")
    ax.grid(axis="y", alpha=0.3)


_PANEL_TITLES = {"accuracy_taught": "accuracy on taught facts", "accuracy": "accuracy (all held-out)",
                 "task_completion": "task completion", "clarification_rate": "clarifying questions asked",
                 "general_accuracy": "general set (forgetting)", "rouge1_f1": "ROUGE-1 F1"}


def _panels(rounds: Sequence[dict[str, Any]], keys: Sequence[str], drawn: list[list[Any]]) -> list[str]:
    """The keys worth a panel: some value present, and not the same numbers as a panel already drawn."""
    chosen = []
    for key in keys:
        values = [r.get(key) for r in rounds]
        if all(v is None for v in values) or values in drawn:
            continue
        drawn.append(values)
        chosen.append(key)
    return chosen


def _figure(report: dict[str, Any], keys: Sequence[str], colours: dict[str, Any], path: Path, title: str) -> Any:
    import matplotlib.pyplot as plt

    rounds = report["rounds"]
    fig, axes = plt.subplots(1, len(keys), figsize=(max(4.6 * len(keys), 7), 5.0), squeeze=False)
    base = report.get("baseline")
    for ax, key in zip(axes[0], keys, strict=True):
        _bars(ax, rounds, key, colours)
        if key in ("accuracy", "accuracy_taught") and isinstance(base, dict) and base.get("accuracy") is not None:
            ax.axhline(100 * base["accuracy"], color="black", linestyle="--", linewidth=1,
                       label=f"{base.get('name', 'baseline')} (a user's pick instead)")
        ax.set_title(_PANEL_TITLES.get(key, key.replace("_", " ")) + " %")
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", fontsize=8, ncol=3, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.05 + 0.035 * math.ceil(len(handles) / 3), 1, 1))
    fig.savefig(path, dpi=100)
    return fig


def _plots(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = report["rounds"]
    labels = list(dict.fromkeys(_stage_and_variant(r)[1] for r in rounds))
    cmap = plt.get_cmap("tab10")
    colours = {label: cmap(i % 10) for i, label in enumerate(labels)}
    title = f"{report['scenario']} ({report['model']}, seed {report['seed']}); error bars: 95% Wilson interval"
    drawn: list[list[Any]] = []
    main = _panels(rounds, ("accuracy_taught", "accuracy"), drawn) or ["accuracy"]
    plt.close(_figure(report, main, colours, out / "learning_curves.png", title))
    others = _panels(rounds, ("task_completion", "general_accuracy", "clarification_rate", "rouge1_f1"), drawn)
    plt.close(_figure(report, others or ["task_completion"], colours, out / "metrics.png", title))


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
        self._n_general = _n_general({"settings": fingerprint}) if isinstance(fingerprint, dict) else None
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
        if round_.get("n_general") is None and round_.get("general_accuracy") is not None and self._n_general:
            round_ = {**round_, "n_general": self._n_general}  # as the report will have it (settings.sizes)
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
