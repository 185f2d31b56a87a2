"""The ``qrnn`` command: ``schemes``, ``train``, ``show``, ``export``, ``baselines``, ``data``,
``noise``, ``study``.

Bad arguments exit with status 2 and one line ``qrnn: error: ...`` naming the allowed values
(no usage block; ``qrnn COMMAND --help`` shows it). Errors a user can cause later (missing or
corrupt data, an unwritable results folder, a corrupt record, grid.json or packed file, a
model.npz that is not the one its run.json names, a run claimed by another runner) end in one
line ``qrnn: error: ...`` and exit status 2; ``--debug`` (or ``QRNN_DEBUG=1``) shows the
traceback instead. Other exceptions are bugs and keep their traceback.

Part of ``qrnn``, the library and study after Ott et al. 2016, *Recurrent Neural Networks With
Limited Numerical Precision*, https://arxiv.org/abs/1608.06902.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from .data.speech import FSDD_SPLITS
from .quantizers import OPTIONS_HELP, SCHEMES, quantizer
from .study import files
from .study.files import Refused, data_folder, writable_folder
from .study.runs import run_note, summary

# allowed values of the RunConfig fields that take a fixed set (argparse choices)
CHOICES = {
    "task": ("ptb-char", "ptb-word", "text8", "fsdd"),
    "split": FSDD_SPLITS,
    "cell": ("rnn", "gru", "lstm"),
    "scheme": SCHEMES,
    "input_norm": ("none", "batch"),
    "pool": ("last", "mean"),
    "clip_shadow": ("auto", "on", "off"),
    "optimizer": ("adam", "sgd"),
}


def _schemes(args: argparse.Namespace) -> int:
    rows = [("scheme", "bits", "stochastic", "options (defaults)")]
    for name in SCHEMES:
        q = quantizer(name)
        rows.append(
            (name, str(q.bits), "yes" if q.stochastic_supported else "no", OPTIONS_HELP[name])
        )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[3])
    return 0


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        msg = f'not valid JSON ({e}); e.g. \'{{"scale": "glorot"}}\''
        raise argparse.ArgumentTypeError(msg) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. \'{"scale": "glorot"}\'')
    return value


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    from .study import train
    from .study.train import FIELD_HELP, RunConfig

    # weight_noise also takes METHOD:SCALE (binary:0.25): RunConfig checks it
    choices = {**CHOICES, "init": getattr(train, "INITS", None)}
    g = p.add_argument_group("run configuration (every field of qrnn.study.train.RunConfig)")
    for f in dataclasses.fields(RunConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        helptext = f"{FIELD_HELP.get(f.name, '')} (default: {default!r})"
        if f.type in ("bool", bool):
            g.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                           help=helptext)  # fmt: skip
        elif f.name == "quantizer_options":
            helptext = ("method options as a JSON object, e.g. '{\"scale\": \"glorot\"}' "
                        "(qrnn schemes lists each method's options) (default: {})")  # fmt: skip
            g.add_argument(flag, type=_json_dict, default=default, metavar="JSON", help=helptext)
        else:
            typ = {"int": int, "float": float, "str": str}[str(f.type)]
            g.add_argument(flag, type=typ, default=default, choices=choices.get(f.name),
                           help=helptext)  # fmt: skip


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``qrnn: error: ...`` (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"qrnn: error: {message} (usage: {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not allowed; it must be an integer >= 1")
    return value


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .study import runlock
    from .study.train import RunConfig, run_id, train

    fields = {f.name for f in dataclasses.fields(RunConfig)}
    try:
        cfg = RunConfig(**{k: v for k, v in vars(args).items() if k in fields})
    except ValueError as e:
        parser.error(str(e))
    data = data_folder(args.data)
    results = writable_folder(args.results)
    if not args.quiet:
        print(f"qrnn: run {run_id(cfg)} -> {results}/; loading the {cfg.task} data ...",
              file=sys.stderr, flush=True)  # fmt: skip
    claim = runlock.acquire(results / run_id(cfg))
    if claim is None:
        info = runlock.read(results / run_id(cfg)) or {"age_s": 0.0}
        raise Refused(
            f"run {run_id(cfg)} is being trained elsewhere ({runlock.describe(info)}); wait "
            f"for it, or remove {results / run_id(cfg) / runlock.CLAIM} if that runner is gone"
        )
    with claim:
        rec = train(
            cfg,
            results,
            quiet=args.quiet,
            force=args.force,
            data_root=data,
            invocation={"argv": ["qrnn", *sys.argv[1:]]},
        )
    print(summary(rec))
    run_dir = results / rec["run_id"]
    print(f"record   {run_dir / 'run.json'}")
    if (rec.get("packed") or {}).get("file"):
        print(f"model    {run_dir / rec['packed']['file']} (qrnn.load_packed; qrnn export)")
    return 0 if rec["status"] in ("completed", "diverged") else 1


def _show(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        print(files.show(args.run, args.results, args.json))
    except files.BadArgument as e:
        parser.error(str(e))
    return 0


def _export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        print(files.export(args.run, args.out, args.results))
    except files.BadArgument as e:
        parser.error(str(e))
    return 0


def _add_export(subparsers) -> None:
    """Register ``qrnn export RUN --out FILE`` on the ``qrnn`` subparsers."""
    from .export import FORMAT, VERSION

    sp = subparsers.add_parser(
        "export",
        help="pack a run's quantized model into a qrnn.packed file",
        description="Write the best-validation model of RUN with its quantized tensors packed "
        f"at their bit width ({FORMAT} version {VERSION}, an uncompressed .npz).",
    )
    sp.add_argument("run", help="run folder, run id, or a unique prefix of one")
    sp.add_argument("--out", required=True, metavar="FILE", help="packed file to write")
    sp.add_argument("--results", default=None, metavar="FOLDER", help=RESULTS_HELP)
    sp.set_defaults(func=_export, subparser=sp)


def _baselines(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .study import baselines

    data, out = data_folder(args.data), writable_folder(args.out, "output folder", "--out")
    invocation = {"argv": ["qrnn", *sys.argv[1:]]}
    if args.task == "ptb-char":
        rec = baselines.ngram_baseline(args.max_order, data, args.train_limit, args.eval_limit,
                                       invocation)  # fmt: skip
    else:
        rec = baselines.digits_baseline(folds=args.folds, data_root=data, invocation=invocation)
    print("\n".join(baselines.summary(rec)))
    print(f"wrote {baselines.write_record(rec, out)} ({rec['wall_time_s']:.1f} s)")
    return 0


def _add_baselines(subparsers) -> None:
    """Register ``qrnn baselines --task ptb-char|fsdd --out FOLDER``
    (:mod:`qrnn.study.baselines`)."""
    helptext = "n-gram (ptb-char) or pooled logistic-regression (fsdd) baseline record"
    sp = subparsers.add_parser("baselines", help=helptext)
    sp.add_argument("--task", required=True, choices=("ptb-char", "fsdd"))
    sp.add_argument("--out", default="results/baselines", help="folder for the record")
    sp.add_argument("--data", default=None, help="data mirror folder (default: $QRNN_DATA)")
    sp.add_argument("--max-order", type=int, default=9, help="ptb-char: orders 1..N (default 9)")
    sp.add_argument("--train-limit", type=int, default=0, help="ptb-char: train prefix (0: all)")
    sp.add_argument("--eval-limit", type=int, default=0, help="ptb-char: eval prefix (0: all)")
    sp.add_argument("--folds", type=int, default=10, help="fsdd: k-fold partition (0: none)")
    sp.set_defaults(func=_baselines, subparser=sp)


def _study(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``qrnn study COMMAND``; a ValueError (bad --only, grid.json, record) ends in one line."""
    from . import study

    try:
        if args.study_command == "run":
            return _study_run(args, study)
        if args.study_command == "status":
            return _study_status(args, study)
        if args.study_command == "ptq":
            made = study.post_training(args.profile, args.results, data_root=args.data)
            print(f"{len(made)} post-training records")
            table = study.summarize_ptq(args.profile, args.results)
            print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
            return 0
        if args.study_command == "hardware":
            made = study.hardware(args.profile, args.results, data_root=args.data, only=args.only)
            print(f"{len(made)} hardware records")
            table = study.summarize_hardware(args.profile, args.results)
            cols = ["task", "cell", "method", "n", "ratio", "energy_sram_pj",
                    "integer_max_abs_diff", "integer_same_prediction"]  # fmt: skip
            print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
            return 0
        if args.study_command == "choose-lr":
            from .study.lrsweep import choose_lr

            chosen, path = choose_lr(args.profile, args.results)
            for (task, cell, method), lr in chosen.items():
                print(f"{task} {cell} {method}: lr {lr:g}")
            print(f"wrote {path} ({len(chosen)} groups decided)")
            return 0
        if args.study_command == "init-table":
            before = files.stamps(Path(args.results) / args.profile)
            table = study.init_table(args.profile, args.results)
            wide = table[table["tensor"].str.startswith("weight")].pivot_table(
                index=["experiment", "task", "cell", "method"], columns="tensor", values="zero"
            )
            print("share of exact zeros at step 0")
            print(wide.to_string(float_format=lambda v: f"{v:.3f}"))
            wrote = files.written(Path(args.results) / args.profile, before)
            print("wrote " + wrote[0] if wrote else "init.csv unchanged (equal to 1e-6)")
            return 0
        return _study_summarize(args, study)
    except ValueError as e:  # a bad --only, grid.json, record or model file: one line
        raise Refused(str(e)) from e


def _study_run(args: argparse.Namespace, study) -> int:
    """``qrnn study run``: run or resume the grid; names the runs that failed or are claimed."""
    outcomes = study.run_study(
        args.profile, args.results, only=args.only, jobs=args.jobs,
        threads=args.threads,
        executor=args.executor, scheduler=args.scheduler, data_root=args.data,
        quiet=args.quiet,
    )  # fmt: skip
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["status"]] = counts.get(o["status"], 0) + 1
        if o["status"] in ("failed", "running elsewhere"):
            print(f"  {o['status']:17s} {o['run_id']}: {o.get('detail') or '?'}")
    print(f"{args.profile}: {len(outcomes)} runs: {json.dumps(counts)}")
    return 0


def _study_status(args: argparse.Namespace, study) -> int:
    """``qrnn study status``: progress, counts by status, provenance, ``--cost`` hours."""
    by = study.status(args.profile, args.results, args.only)
    total = sum(len(v) for v in by.values())
    finished = len(by["completed"]) + len(by["diverged"]) + len(by["failed"])
    width = 30
    filled = round(width * finished / total) if total else width
    print(f"{args.profile} [{'#' * filled}{'.' * (width - filled)}] {finished}/{total}")
    folder = study.runs_dir(args.results, args.profile)
    for name, ids in by.items():
        print(f"  {name:11s} {len(ids)}")
        if args.verbose and name in ("running", "interrupted", "failed", "diverged"):
            for rid in ids:
                print(f"      {rid}{run_note(name, folder / rid)}")
    from .study.provenance import provenance

    bad = provenance(args.profile, args.results)  # records not from a clean ancestor
    print(f"  provenance  {len(bad)} finished records not from a clean ancestor of HEAD")
    for rid, why in bad if args.verbose else ():
        print(f"      {rid}: {why}")
    if args.cost:
        table = study.cost(args.profile, args.results, args.cost, args.only)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


def _study_summarize(args: argparse.Namespace, study) -> int:
    """``qrnn study summarize``: runs.csv and summary.csv from the run records."""
    folder = Path(args.results) / args.profile
    before = files.stamps(folder)
    if args.skip_unlabelled:
        for rid, why in study.unlabelled(args.profile, args.results):
            print(f"qrnn: left out {rid}: {why}", file=sys.stderr)
    _, summary = study.summarize(args.profile, args.results, args.data,
                                 skip_unlabelled=args.skip_unlabelled)  # fmt: skip
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    wrote = files.written(folder, before)
    print("wrote " + ", ".join(wrote))
    return 0


def study_profiles() -> tuple[str, ...]:
    from .study import PROFILES

    return PROFILES


def _add_noise(sub) -> None:
    """Register ``qrnn noise``: noise through time (:func:`qrnn.study.noise.noise_study`)."""
    from .analysis.noisetime import MODES

    p = sub.add_parser("noise", help="noise through time: one stochastic weight draw reused or "
                       "redrawn per step, against the deterministic trajectory")  # fmt: skip
    for flag, default, kind in (("--task", "ptb-char", str), ("--cell", "lstm", str),
                                ("--hidden", 128, int), ("--draws", 32, int),
                                ("--seq-len", 100, int), ("--seed", 0, int)):  # fmt: skip
        p.add_argument(flag, default=default, type=kind)
    p.add_argument("--methods", nargs="+", default=None, help="labels of analysis.METHODS")
    p.add_argument("--source", default="init", help="'init' or a results folder / profile")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--jacobian-modes", nargs="*", default=["fixed"], choices=MODES)
    p.add_argument("--out", default=None)
    p.add_argument("--data-root", default=None)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a RunConfig field of the models (init: built with it; trained: runs "
                   "must have it), e.g. --set embed=32 --set init=glorot; VALUE is read as "
                   "JSON, else as a string")  # fmt: skip
    p.set_defaults(func=_noise, subparser=p)


def _noise(a: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    import torch

    from .study.noise import noise_study

    config = {}
    for item in a.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            p.error(f"--set {item!r}: use FIELD=VALUE, e.g. --set embed=32")
        try:
            config[key] = json.loads(raw)
        except ValueError:
            config[key] = raw
    if a.threads:
        torch.set_num_threads(a.threads)
    noise_study(a.task, a.cell, a.hidden, a.draws, a.seq_len, a.methods, a.seed, a.source,
                modes=a.modes, jacobian_modes=a.jacobian_modes, out=a.out,
                data_root=a.data_root, config=config)  # fmt: skip
    return 0


def _add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the traceback of an error (also: QRNN_DEBUG=1)")  # fmt: skip


RESULTS_HELP = (
    "folder of run folders, or of study folders (<profile>/runs) (default: runs/ and results/)"
)


def _data(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    print(files.verify_data_files(args.data, progress=not args.quiet))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``qrnn`` parser: every command and its flags, ``--debug`` on each command."""
    from ._version import __version__

    p = OneLineParser(
        prog="qrnn", description="Recurrent networks with limited numerical precision."
    )
    p.add_argument("--version", action="version", version=f"qrnn {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("schemes", help="list the quantization methods, their options and bits")
    s.set_defaults(func=lambda a, _p: _schemes(a), subparser=s)
    t = sub.add_parser(
        "train",
        help="train one run and write its record",
        description="Train one run; writes RESULTS/<run-id>/run.json. A run "
        "whose record exists is not redone; an interrupted one resumes.",
    )
    _add_config_flags(t)
    t.add_argument("--results", default="runs", metavar="FOLDER",
                   help="where the run folder goes (default: runs/, untracked)")  # fmt: skip
    t.add_argument("--data", default=None, help="data mirror folder (default: $QRNN_DATA)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("--force", action="store_true", help="redo the run even if recorded")
    t.set_defaults(func=_train, subparser=t)
    sh = sub.add_parser("show", help="summarize a run record")
    sh.add_argument("run", help="run folder, run id, or a unique prefix of one")
    sh.add_argument("--results", default=None, metavar="FOLDER", help=RESULTS_HELP)
    sh.add_argument("--json", action="store_true", help="print the whole record")
    sh.set_defaults(func=_show, subparser=sh)
    _add_export(sub)  # qrnn export RUN --out FILE
    _add_baselines(sub)  # qrnn baselines --task ptb-char|fsdd
    _add_data(sub)  # qrnn data verify
    _add_noise(sub)  # qrnn noise
    stsub = _add_study(sub)  # qrnn study COMMAND
    _add_debug(p)
    for name, sp in sub.choices.items():
        if name not in ("study", "data"):
            _add_debug(sp)
    for sp in stsub.choices.values():
        _add_debug(sp)
    return p


def _add_data(sub) -> None:
    """Register ``qrnn data verify`` on the ``qrnn`` subparsers."""
    d = sub.add_parser("data", help="check the data files (mirror and cache)")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    dv = dsub.add_parser("verify", help="hash every data file again and name each bad one")
    dv.add_argument("--data", default=None, help="data mirror folder (default: $QRNN_DATA)")
    dv.add_argument("--quiet", action="store_true", help="no progress bar")
    dv.set_defaults(func=_data, subparser=dv)
    _add_debug(dv)


def _add_study(sub):
    """Register ``qrnn study COMMAND`` on the ``qrnn`` subparsers; returns its subparsers."""
    st = sub.add_parser("study", help="run, watch and summarize the study grid")
    stsub = st.add_subparsers(dest="study_command", required=True, metavar="STUDY_COMMAND")
    for name, helptext in (
        ("run", "run or resume a profile's grid (completed runs are skipped)"),
        ("status", "done / running / failed / diverged counts"),
        ("summarize", "write runs.csv and summary.csv from the run records"),
        ("ptq", "quantize the trained float runs after training (no retraining): ptq.csv"),
        ("hardware", "pack the trained runs, count operations and energy, run the integer "
         "path: hardware.csv"),
        ("init-table", "each method's weights at step 0 (zero shares, norms): init.csv"),
        ("choose-lr", "each method's learning rate from the lr-sweep runs: lr_choice.csv"),
    ):  # fmt: skip
        sp = stsub.add_parser(name, help=helptext)
        sp.add_argument("--profile", default="cpu", choices=study_profiles(),
                        help="grid size (default: cpu)")  # fmt: skip
        sp.add_argument("--results", default="results", help="results folder")
        sp.add_argument("--data", default=None, help="data mirror folder (default: $QRNN_DATA)")
        if name not in ("summarize", "init-table", "choose-lr"):
            only_help = "filter: experiment, task, cell, method or seed (repeatable)"
            sp.add_argument("--only", action="append", metavar="KEY=V1,V2", help=only_help)
        if name == "run":
            sp.add_argument("--jobs", type=int, default=None, help="runs at a time (local)")
            sp.add_argument("--threads", type=int, default=None,
                            help="threads per run (default: cores // jobs)")  # fmt: skip
            sp.add_argument("--executor", choices=("local", "dask"), default="local",
                            help="local processes or Dask distributed")  # fmt: skip
            sp.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
            sp.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "status":
            sp.add_argument("--verbose", "-v", action="store_true", help="list unfinished ids")
            sp.add_argument("--cost", type=positive_int, nargs="?", const=2, metavar="WORKERS",
                            help="hours per experiment: measured, estimated, and the wall "
                            "time on WORKERS parallel runners (default 2)")  # fmt: skip
        if name == "summarize":
            sp.add_argument("--skip-unlabelled", action="store_true",
                            help="summarize without the finished runs that have no labels in "
                            "grid.json (default: refuse, naming them)")  # fmt: skip
        sp.set_defaults(func=_study, subparser=sp)
    return stsub


def error_line(e: BaseException) -> str:
    """One line naming what was wrong (an OSError as ``reason: path``)."""
    if isinstance(e, OSError) and e.strerror and e.filename is not None:
        msg = f"{e.strerror}: {e.filename}" + (f" -> {e.filename2}" if e.filename2 else "")
    else:
        msg = str(e) or type(e).__name__
    return " ".join(msg.split())


def main(argv: list[str] | None = None) -> int:
    """Run the command; user-caused errors end in one line on stderr and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("QRNN_DEBUG", "") not in ("", "0")
    try:
        return args.func(args, args.subparser)
    except (Refused, ValueError, OSError) as e:  # data, folders, records, packed files, claims
        if debug:
            raise
        print(f"qrnn: error: {error_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
