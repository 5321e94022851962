"""Command line: ``hiclust demo | train | evaluate`` and the subcommands registered by
``hiclust.report.cli`` (tree, report, predict), ``hiclust.bench`` (bench) and
``hiclust.reproduce`` (flat-table)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn

__all__ = ["main", "run_training", "evaluate_run", "load_run_model", "load_run_data"]

# Modules that add subcommands: each defines register(subparsers).
EXTENSIONS: list[str] = [
    "hiclust.report.cli",
    "hiclust.bench",
    "hiclust.reproduce",
    "hiclust.shard_cli",
]

def method_flags() -> dict[str, dict[str, Any]]:
    """Command-line flags of the estimators' parameters, derived from their declarations
    (``_params``): flag → {"param", "type", "help", "methods"}. A parameter shared by several
    methods is one flag (its help gives each method's meaning where they differ); flags that a
    method does not take are refused for it."""
    from numbers import Integral

    from hiclust.methods import METHODS
    from hiclust.methods.params import Interval, StrOptions, flag_name

    flags: dict[str, dict[str, Any]] = {}
    for method, cls in METHODS.items():
        for name, param in getattr(cls, "_params", {}).items():
            flag = flag_name(name, param)
            if not flag:
                continue
            typ: type = str
            choices: set[str] = set()
            for c in param.constraint_list():
                if isinstance(c, Interval):
                    typ = int if c.type is Integral else float
                elif isinstance(c, StrOptions):
                    choices |= set(c.options)
            text = param.doc.replace("None: ", "omitted: ")
            text += f" Choices: {', '.join(sorted(choices))}." if choices else ""
            spec = flags.setdefault(flag, {"param": name, "type": typ, "methods": [], "texts": {}})
            spec["methods"].append(method)
            spec["texts"].setdefault(text, []).append(method)
    for spec in flags.values():
        texts = spec.pop("texts")
        if len(texts) == 1:
            spec["help"] = next(iter(texts))
        else:  # the same flag means something else per method: say so for each
            spec["help"] = " | ".join(f"{', '.join(ms)}: {t}" for t, ms in texts.items())
    return flags


def _add_param_flags(p: argparse.ArgumentParser) -> None:
    from hiclust.methods import METHODS

    g = p.add_argument_group("estimator parameters (override the config; each says which methods take it)")
    for flag, spec in method_flags().items():
        takers = "all methods" if len(spec["methods"]) == len(METHODS) else ", ".join(spec["methods"])
        # A flag named unlike its parameter names the key a YAML config's params: use (--crop-size: image_size).
        key = "" if flag[2:].replace("-", "_") == spec["param"] else f" In a config: params: {spec['param']}."
        g.add_argument(flag, dest=f"param_{spec['param']}", type=spec["type"], default=None,
                       metavar=spec["type"].__name__.upper(), help=f"{spec['help']}{key} [{takers}]".replace("%", "%%"))


def _check_method_flags(method: str, args: argparse.Namespace) -> None:
    """Refuses flags of parameters that ``method`` does not take (before anything is written)."""
    from hiclust.methods import METHODS

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(sorted(METHODS))}")
    given = [(flag, spec) for flag, spec in method_flags().items()
             if getattr(args, f"param_{spec['param']}", None) is not None and method not in spec["methods"]]
    if given:
        flag, spec = given[0]
        raise ValueError(f"{flag} is not a parameter of --method {method} (taken by: {', '.join(spec['methods'])}); "
                         f"see `hiclust train --help`")


def flag_for_param(cls: type, name: str) -> str:
    """The flag of parameter ``name`` of estimator class ``cls`` (the name itself if it has none)."""
    from hiclust.methods.params import flag_name

    param = getattr(cls, "_params", {}).get(name)
    return (flag_name(name, param) if param is not None else "") or name


def in_flag_terms(cls: type, message: str) -> str:
    """``message`` with the estimator's parameter names written as their flags: "batch_size=65"
    becomes "--batch-size 65", "pretrain_epochs" becomes "--pretrain-epochs" (and "epochs" /
    "depth" where they stand as names: "(epochs=4)", "epochs (6)", "depth >= 3")."""
    import re

    params = getattr(cls, "_params", {})
    flags = {name: flag_for_param(cls, name) for name in params if flag_for_param(cls, name).startswith("--")}
    for name in sorted(flags, key=len, reverse=True):
        flag = flags[name]
        message = re.sub(rf"(?<![\w\-^'./]){name}=(?!=)", f"{flag} ", message)
        if "_" in name:
            message = re.sub(rf"(?<![\w\-^'.]){name}(?![\w\-.])", flag, message)
        else:
            message = re.sub(rf"(?<![\w\-^'./]){name}(?= \(| >=| <=| must| or\b)", flag, message)
            message = re.sub(rf"(?<=\b(?:raise|lower) ){name}\b", flag, message)  # "or raise epochs"
    return message


def derive_defaults(config: Any, n: int, input_space: bool = False,
                    feature_matrix: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Parameters that fit a dataset of ``n`` items where ``config.params`` leaves them out
    (given values, a preset's included, are never changed). Nothing is derived for a CoHiClust
    run on a feature matrix in input-space mode (``input_space``): the estimator's own defaults
    are made for small matrices (several passes per epoch, no pre-training). On any other
    feature matrix (``feature_matrix``) CoHiClust's epochs are left to the estimator too (about
    600 optimizer steps, at least 16 epochs); only the batch size is derived.

    * ``batch_size``: the class default (256) when n >= 4 * 256, else the largest power of two
      <= n / 4 (at least 2): several full batches per epoch.
    * CoHiClust ``epochs``: 100, raised on small data towards about 1,000 optimizer steps (at
      most 300 epochs), and so that every pruning fits after pre-training.
    * CoHiClust ``pretrain_epochs``: epochs // 3, lowered where the 2^depth − K prunings (one per
      epoch) would not fit after it.

    * ``n_clusters`` is never derived, but a note says which K is assumed when it was not given.

    Returns (the parameters to train with, one "flag value" note per derived value).
    """
    import inspect
    import math

    from hiclust.methods import METHODS

    cls = METHODS.get(config.method)
    if cls is None:
        return dict(config.params), []
    defaults = {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    notes: list[str] = []
    if "n_clusters" in defaults and "n_clusters" not in config.params:  # neither flag nor preset gave K
        notes.append(f"{flag_for_param(cls, 'n_clusters')} {defaults['n_clusters']} "
                     "(not given: set it to the number of groups you expect)")
    if input_space and config.method == "cohiclust":
        return dict(config.params), notes
    params = dict(config.params)

    def derive(name: str, value: Any) -> None:
        if name not in params and name in defaults and value != defaults[name]:
            params[name] = value
            notes.append(f"{flag_for_param(cls, name)} {value}")

    if "batch_size" in defaults and isinstance(defaults["batch_size"], int) and n >= 2:
        bs = defaults["batch_size"]
        if n < 4 * bs:
            bs = max(2, 2 ** int(math.floor(math.log2(max(n // 4, 1)))))
        derive("batch_size", bs)
    if config.method == "cohiclust" and not feature_matrix:
        from hiclust.methods.base import default_depth
        from hiclust.methods.cohiclust import DEFAULT_EPOCHS

        k = int(params.get("n_clusters", defaults["n_clusters"]))
        depth = params.get("depth") or default_depth(k)
        n_prune = max(0, 2 ** int(depth) - k)
        steps = max(1, n // int(params.get("batch_size", defaults["batch_size"])))
        if "epochs" not in params:
            pre = params.get("pretrain_epochs")
            need = (int(pre) if pre is not None else 0) + n_prune + 10
            epochs = max(DEFAULT_EPOCHS, min(300, math.ceil(1000 / steps)),
                         need if pre is not None else math.ceil(1.5 * (n_prune + 10)))
            derive("epochs", epochs)
        epochs = int(params.get("epochs") or DEFAULT_EPOCHS)
        if "pretrain_epochs" not in params and params.get("prune_start") is None and epochs // 3 > epochs - n_prune:
            # The default epochs // 3 would leave too few; with fewer epochs than prunings the
            # estimator refuses, and with 0 here its hint names the least epochs this rule allows.
            derive("pretrain_epochs", max(0, epochs - n_prune))
    return params, notes


def _input_space_run(config: Any, data: Any) -> bool:
    """Whether ``config`` trains CoHiClust on the feature matrix ``data`` in input-space mode."""
    from hiclust.data.feature_files import FeatureDataset

    if config.method != "cohiclust":
        return False
    if not isinstance(data, FeatureDataset):
        if config.params.get("backbone") == "input":  # refused here, before any other output
            raise ValueError("--backbone input is for feature matrices (--dataset features:PATH); for images leave "
                             "--backbone out or name a network")
        return False
    from hiclust.data.streaming import is_streamed
    from hiclust.methods.cohiclust import default_input_space

    # Decided from the shape alone: no pass over the matrix before the estimator makes its own.
    backbone = config.params.get("backbone", "auto")
    return backbone == "input" or default_input_space(backbone, len(data.features), is_streamed(data.features))


def validate_estimator(model: Any) -> None:
    """The estimator's parameter validation with the error in command-line terms (flag names)."""
    import re

    from hiclust.methods.params import InvalidParameterError

    try:
        model._validate_params()
    except InvalidParameterError as exc:
        msg = re.sub(r"^The '(\w+)' parameter of \w+",
                     lambda m: flag_for_param(type(model), m.group(1)), str(exc))
        msg = msg.replace(" or None. Got", ". Got")  # a flag left out is None; it cannot be given as None
        msg = re.sub(r" or an instance of '[\w.]+'\. Got", ". Got", msg)  # a network object is no flag value
        choice = re.search(r"among \{([^}]*)\}.* Got '([^']*)' instead", msg)
        if choice:  # a misspelt choice ('standardised'): name the nearest one
            import difflib

            near = difflib.get_close_matches(choice.group(2), re.findall(r"'([^']*)'", choice.group(1)), n=1)
            msg += f" Did you mean {near[0]}?" if near else ""
        raise ValueError(msg) from None


def load_run_data(config: Any, download: bool = False, split: str | None = None):
    """The run's data: by default the split it is evaluated on (``config.evaluation_split``)."""
    from hiclust.data import load_dataset

    return load_dataset(
        config.dataset, root=config.root, split=split or config.evaluation_split, download=download,
        image_size=config.image_size, strict=config.strict,
        label_column=getattr(config, "label_column", None), id_column=getattr(config, "id_column", None),
    )


def override_data(config: Any, dataset: str | None = None, root: str | None = None) -> Any:
    """``config`` with its data moved to ``dataset`` / ``root`` (``--dataset`` / ``--root`` of the
    commands that read a run), paths made absolute; unchanged when both are None."""
    from dataclasses import replace

    from hiclust.runs import with_absolute_paths

    if dataset is None and root is None:
        return config
    config = replace(config, dataset=dataset or config.dataset, root=root if root is not None else config.root)
    if config.dataset.startswith("features:") and config.dataset.lower().endswith(".npy"):
        config = replace(config, label_column=None, id_column=None)  # a .npy holds the matrix only
    return with_absolute_paths(config)


def load_run(run_dir: str | Path, device: str = "auto", dataset: str | None = None,
             root: str | None = None) -> tuple[Any, Any, Any]:
    """(fitted model, config, evaluation data) of a run. With ``dataset`` / ``root`` the data is
    read from there instead, and must be the data the run recorded (count, shape, content hash)
    when the run is evaluated on its training split."""
    from hiclust.runs import check_same_data

    model, config = load_run_model(run_dir, device)
    config = override_data(config, dataset, root)
    data = load_run_data(config)
    if (dataset is not None or root is not None) and config.evaluation_split == config.split:
        check_same_data(config.data, data, config.dataset)
    return model, config, data


def _xy(data: Any) -> tuple[Any, Any]:
    """(X, y) to hand an estimator: an ImageDataset carries its labels; a FeatureDataset gives its
    (N, D) matrix and labels."""
    from hiclust.data.feature_files import FeatureDataset

    return (data.features, data.labels) if isinstance(data, FeatureDataset) else (data, None)


def load_run_model(run_dir: str | Path, device: str = "auto"):
    """The fitted estimator of a run: model.pt, or the last checkpoint if training stopped early."""
    from hiclust.methods import METHODS
    from hiclust.runs import read_run_config

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    cls = METHODS[config.method]
    for name in ("model.pt", "checkpoint.pt"):
        if (run_dir / name).exists():
            return cls.load(run_dir / name, device=device), config
    raise FileNotFoundError(f"{run_dir} has no model.pt or checkpoint.pt yet; train it first")


def _metrics_for(model: Any, data: Any, labels_pred) -> dict[str, float]:
    from hiclust.data.feature_files import model_input
    from hiclust.metrics import evaluate, leaf_purity

    y = data.labels.numpy()
    hierarchy = getattr(model, "hierarchy_", None)
    if hasattr(model, "predict_leaf"):
        # A tree with more leaves than clusters (DeepECT): DP and leaf purity on the full tree,
        # the other metrics on the flat partition.
        leaf = model.predict_leaf(model_input(data))
        out = evaluate(y, labels_pred, hierarchy.to_linkage() if hierarchy.n_leaves > 1 else None,
                       leaf if hierarchy.n_leaves > 1 else None)
        out["leaf_purity"] = leaf_purity(y, leaf)
        return out
    if hierarchy is not None and hierarchy.n_leaves > 1:
        return evaluate(y, labels_pred, hierarchy.to_linkage(), labels_pred)
    return evaluate(y, labels_pred)


def _resume_note(run_dir: Path, progress: dict[str, Any], epochs: int | None) -> str:
    """The line ``train --resume`` prints: where the checkpoint stands and what is left to do."""
    from hiclust.interrupt import describe_progress

    done = progress.get("epoch")
    # Without --epochs (the run's own, perhaps derived by the estimator) a run with model.pt
    # finished: model.pt is written only at the end.
    finished = epochs is None and (run_dir / "model.pt").exists()
    if done is not None and progress.get("phase") in (None, "train") and (
            finished or (epochs is not None and done >= epochs)):
        return (f"hiclust train: {run_dir} is already trained to epoch {done}, so there is nothing left to train "
                f"(its outputs are written again); to train longer, pass --epochs N with N > {done}")
    return f"hiclust train: resuming {run_dir} {describe_progress(progress)}" + (
        f", to epoch {epochs}" if epochs is not None else "")


def run_training(
    run_dir: str | Path,
    config: Any,
    *,
    resume: bool = False,
    overwrite: bool = False,
    download: bool = False,
    checkpoint_every: int = 10,
    picture: bool = True,
    summary: bool = False,
    command: str = "train",
) -> tuple[Any, dict[str, float] | None]:
    """Trains ``config`` into ``run_dir``. Data and parameters are validated before anything is
    written. Ends by writing ``assignments.csv`` (every training item's leaf, path and leaf
    probability) and, with ``summary``, printing the one-screen summary
    (:func:`hiclust.report.summary.format_summary`). Returns (fitted estimator, final metrics or
    None without labels)."""
    from hiclust.checkpoint import atomic_write_text
    from hiclust.methods import make_estimator
    from hiclust.runs import prepare_run_dir

    from hiclust import distributed as dist_utils

    if not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every must be a positive number of epochs, got {checkpoint_every!r}")
    # Under torchrun only rank 0 downloads and writes; the others wait where they would race it.
    main_rank = dist_utils.is_main()
    if download and not main_rank:
        dist_utils.barrier()
    data = load_run_data(config, download, split=config.split)
    from dataclasses import replace

    from hiclust.runs import check_same_data, data_fingerprint

    if resume:  # the checkpoint continues only on the data it was trained on
        check_same_data(config.data, data, config.dataset if config.root is None else f"{config.dataset} (--root {config.root})")
    config = replace(config, data=data_fingerprint(data))
    fit_extra: dict[str, Any] = {}
    if config.instance_split:
        from hiclust.methods import METHODS

        if not getattr(METHODS.get(config.method), "_SUPPORTS_INSTANCE_DATA", False):  # before loading it
            raise ValueError(f"--instance-split is part of CC's recipe (--method cc), not of --method {config.method}")
        fit_extra["instance_data"] = _xy(load_run_data(config, download, split=config.instance_split))[0]
    eval_data = data if config.evaluation_split == config.split else load_run_data(config, download)
    if download and main_rank:
        dist_utils.barrier()
    fitted_note = ""
    if not resume:  # a resumed run keeps the parameters it was started with
        from hiclust.data.feature_files import FeatureDataset

        input_space = _input_space_run(config, data)
        params, notes = derive_defaults(config, len(data), input_space, feature_matrix=isinstance(data, FeatureDataset))
        if config.method == "cohiclust" and isinstance(data, FeatureDataset) and not input_space \
                and params.get("epochs") is None:
            estimator = make_estimator("cohiclust", dict(params))
            epochs = estimator.feature_epochs(len(data))
            steps = epochs * (len(data) // estimator.batch_size)
            pretrain = "" if params.get("pretrain_epochs") is not None else \
                f", {estimator._schedule(False, epochs)[1]} of them pre-training"
            notes.append(f"--epochs {epochs} ({steps:,} optimizer steps{pretrain})")
        if config.method in ("cohiclust", "cc", "simclr") and not isinstance(data, FeatureDataset) \
                and params.get("backbone", "auto") == "auto":
            # Say which network "auto" picked: ResNet18 on small images is the slow surprise.
            from hiclust.nn.backbones import default_backbone

            channels, height, _ = data.image_shape
            size = params.get("image_size") or height
            chosen = default_backbone(channels, size)
            notes.append(f"--backbone {chosen} (auto, for {channels}-channel {size} px images"
                         + ("; --backbone smallcnn trains several times faster on images this small, with less capacity)"
                            if chosen != "smallcnn" and size <= 64 else ")"))
        if config.method in ("cohiclust", "cc", "simclr", "dec", "idec", "deepect") \
                and not isinstance(data, FeatureDataset):
            note = _auto_augmentation_note(config.method, params, data)
            if note:
                notes.append(note)
        config = replace(config, params=params)
        if notes and main_rank:  # printed once the parameters passed their checks (below)
            fitted_note = f"fitted to the data ({len(data):,} items): {', '.join(notes)}"
    model = make_estimator(config.method, dict(config.params))
    if dist_utils.is_distributed() and not getattr(model, "_SUPPORTS_DISTRIBUTED", False):
        raise ValueError(
            f"data-parallel training (torchrun, {dist_utils.world_size()} processes) is not implemented for "
            f"--method {config.method}; run it in a single process (without torchrun)"
        )
    validate_estimator(model)
    checkpoint = Path(run_dir) / "checkpoint.pt"
    records: list[dict[str, Any]] = []  # history.jsonl: the resumed checkpoint's records, then new ones
    if resume and checkpoint.exists() and hasattr(model, "_check_resume_config"):
        # Refuse an incompatible checkpoint before run.json is rewritten, and before the
        # parameter checks below: a resumed run keeps the schedule it started with, which they
        # would otherwise judge as if the run started afresh with these epochs.
        from hiclust.checkpoint import load_checkpoint

        saved_config, saved_state = load_checkpoint(checkpoint, expected_class=type(model).__name__)
        progress, asked = saved_state.get("progress", {}), config.params.get("epochs")
        done = progress.get("epoch")
        if asked is not None and done is not None and progress.get("phase") in (None, "train") and done > asked:
            raise ValueError(f"{run_dir} is already trained to epoch {done}, past --epochs {asked}: a run resumes "
                             f"from where it is, never back to an earlier epoch; pass --epochs N with N > {done} to "
                             "train longer, or leave --epochs out to write its outputs again")
        model._check_resume_config(saved_config, checkpoint)
        try:
            model._check_resume_state(saved_state, checkpoint)
        except ValueError as exc:  # in command-line terms
            raise type(exc)(in_flag_terms(type(model), str(exc))) from None
        records = list(saved_state.get("history", []))
        if main_rank:
            fitted_note = _resume_note(Path(run_dir), saved_state.get("progress", {}), config.params.get("epochs"))
    if hasattr(model, "check_params"):
        try:
            model.check_params(data, **fit_extra)  # the dataset itself: a table's header names the columns
        except ValueError as exc:  # the same error, in command-line terms
            raise type(exc)(in_flag_terms(type(model), str(exc))) from None
    if fitted_note:  # after every refusal above, so that a refused command prints its one line only
        print(fitted_note, file=sys.stderr)
    crop = config.params.get("image_size")
    if config.image_size is not None and crop is not None and crop != config.image_size and main_rank \
            and hasattr(data, "image_shape"):
        # --image-size and --crop-size are easy to confuse: a preset's crop wins over a larger resize.
        upscaled = " (upscaled: a crop larger than the image adds no detail, only computation)" \
            if crop > config.image_size else ""
        print(f"note: --image-size {config.image_size} resizes the images on load; the network sees {crop} px "
              f"crops of them (--crop-size {crop}){upscaled}; pass --crop-size {config.image_size} to train at "
              f"{config.image_size} px", file=sys.stderr)
    from hiclust.runs import RunLock, commit_overwrite

    final_dir = Path(run_dir)
    # --overwrite of an existing run trains next to it and replaces it only when done, so a kill,
    # an error or a NaN leaves the old run as it was.
    replacing = overwrite and not resume and (final_dir / "run.json").exists()
    run_dir = final_dir.parent / f".{final_dir.name}.overwrite.tmp" if replacing else final_dir
    lock = None
    if main_rank:
        lock = RunLock(final_dir).acquire()  # one training per run directory
        try:
            prepare_run_dir(final_dir, config, overwrite=overwrite, resume=resume, write_to=run_dir, command=command)
        except BaseException:
            lock.release(restore=True)  # refused: a stale lock found here stays as it was
            raise
    dist_utils.barrier()  # the run directory (and a resumed checkpoint) exists before any rank trains

    def train_and_answer() -> tuple[Any, dict[str, float] | None]:
        def write_history(record: dict[str, Any]) -> None:
            records.append(record)
            lines = "".join(json.dumps(r) + "\n" for r in records)
            atomic_write_text(run_dir / "history.jsonl", lines)

        import warnings

        from hiclust.interrupt import stop_at_epoch_boundary
        from hiclust.methods.base import EmptyClusterWarning

        # Ctrl-C: a checkpoint at the end of the current epoch, then RunInterrupted (below).
        # Empty clusters: the summary names them in command-line terms (leaf_warnings).
        with warnings.catch_warnings():
            if summary:
                warnings.simplefilter("ignore", EmptyClusterWarning)
            with stop_at_epoch_boundary(
                    "hiclust train: stopping at the end of this epoch to write a checkpoint (Ctrl-C again: stop now, "
                    "keeping the last checkpoint)", enabled=main_rank and not dist_utils.is_distributed()):
                model.fit(
                    data, checkpoint=run_dir / "checkpoint.pt", checkpoint_every=checkpoint_every,
                    resume=resume, callback=write_history, **fit_extra,
                )
        if not main_rank:
            return model, None
        model.save(run_dir / "model.pt")
        from hiclust.report.summary import assignment_table, format_summary, write_assignments

        table = assignment_table(model, _xy(data)[0])
        write_assignments(table, data.ids(), run_dir / "assignments.csv", _label_names(data))
        metrics = None
        if eval_data.labels is not None:
            pred = model.labels_ if eval_data is data else model.predict(_xy(eval_data)[0])
            metrics = _metrics_for(model, eval_data, pred)
            atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
        if picture and getattr(model, "hierarchy_", None) is not None:
            from hiclust.report import plot_tree

            plot_tree(model, eval_data, out=run_dir / "tree.png")
        if summary:
            print(format_summary(model, table, method=config.method, assignments=final_dir / "assignments.csv",
                                 n_items_name="items" if hasattr(data, "features") else "images"))
        return model, metrics

    try:
        model, metrics = train_and_answer()
        if main_rank and replacing:
            commit_overwrite(run_dir, final_dir)
        return model, metrics
    except KeyboardInterrupt as exc:
        if not main_rank:
            raise
        raise _interrupted(exc, final_dir, run_dir, replacing) from None
    finally:
        if lock is not None:
            lock.release()


class RunInterrupted(KeyboardInterrupt):
    """A training run stopped by Ctrl-C; the message says what was kept and how to go on
    (``hiclust`` prints it as one line and exits with status 130)."""


def _interrupted(exc: KeyboardInterrupt, final_dir: Path, run_dir: Path, replacing: bool) -> RunInterrupted:
    """The :class:`RunInterrupted` for a Ctrl-C during training into ``final_dir`` (``run_dir``: where
    the run was being written, the temporary sibling of an ``--overwrite``)."""
    import shlex
    import shutil

    from hiclust.interrupt import TrainingInterrupted, describe_progress

    if replacing:  # the new run was being built beside the old one: drop it, the old run is intact
        shutil.rmtree(run_dir, ignore_errors=True)
        return RunInterrupted(f"interrupted; the run in {final_dir} was left as it was (run the same command again "
                              "to replace it)")
    checkpoint = run_dir / "checkpoint.pt"
    if isinstance(exc, TrainingInterrupted):
        kept = f"checkpoint written {describe_progress(exc.progress)} ({checkpoint})"
    elif checkpoint.exists():
        try:  # say how far it goes: the log may be several epochs further
            from hiclust.checkpoint import load_checkpoint

            at = ", " + describe_progress(load_checkpoint(checkpoint)[1].get("progress", {}))
        except Exception:  # noqa: BLE001 - the message must not fail; the file is named anyway
            at = ""
        kept = f"the last checkpoint was kept ({checkpoint}{at})"
    else:
        kept = "no checkpoint had been written yet (resuming starts the training over)"
    return RunInterrupted(f"interrupted; {kept}; continue with: hiclust train --resume {shlex.quote(str(final_dir))}")


def _label_names(data: Any) -> list[str] | None:
    """Each item's class name (its label id as text without names), or None when unlabeled."""
    if data.labels is None:
        return None
    names = data.class_names
    ids = data.labels.tolist()
    return [names[i] if names is not None and i < len(names) else str(i) for i in ids]


def read_label_file(path: str | Path, n: int) -> tuple[np.ndarray, list[str] | None]:
    """Labels for ``n`` items from ``path``: a .npy array (N,) or a text file with one label per
    line (names or numbers, no header), in the order of the run's items. Returns the class ids
    (N,) int64 and the class names (None for ids ≥ 0 given as numbers), as a feature file's
    label column is read."""
    import numpy as np

    from hiclust.data.feature_files import _labels_to_ids

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--labels {path}: no such file")
    if path.suffix.lower() == ".npy":
        values = np.load(path, allow_pickle=False)
        if values.ndim != 1:
            raise ValueError(f"--labels {path} must hold one label per item (a 1-d array), got shape {values.shape}")
    else:
        values = np.asarray(path.read_text(encoding="utf-8").splitlines(), dtype=object)
        if values.size and values[-1] == "":
            values = values[:-1]
        if any(v.strip() == "" for v in values):
            raise ValueError(f"--labels {path} has an empty line; give one label per line, one line per item")
        values = np.asarray([v.strip() for v in values])
        try:  # numbers read as numbers ("10" after "9")
            values = values.astype(np.float64)
        except ValueError:
            pass
    if values.shape[0] != n:
        raise ValueError(f"--labels {path} holds {values.shape[0]} labels but the run has {n} items; give one "
                         "label per item, in the run's order (as in assignments.csv)")
    ids, class_names = _labels_to_ids(values, f"--labels {path}")
    return ids.numpy(), class_names


def evaluate_run(run_dir: str | Path, device: str = "auto", *, dataset: str | None = None,
                 root: str | None = None, labels: str | Path | None = None) -> dict[str, Any]:
    """Predicts the run's dataset with its model. With labels: metrics overall and per tree level;
    always: the label-free numbers (leaf sizes, balance per level, mean decision confidence,
    silhouette on the learned representation, or on the whitened rows of a small feature matrix
    split directly). Writes ``evaluation.json``. ``dataset`` /
    ``root`` point at the run's data where it has moved (see :func:`load_run_data`); ``labels``:
    a label file for data stored without labels, or to replace them (see :func:`read_label_file`)."""
    import dataclasses

    from hiclust.checkpoint import atomic_write_text
    from hiclust.report.summary import assignment_table, label_free_evaluation

    model, config, data = load_run(run_dir, device, dataset, root)
    if labels is not None:
        import torch

        ids, class_names = read_label_file(labels, len(data))
        data = dataclasses.replace(data, labels=torch.from_numpy(ids), class_names=class_names)
    x = _xy(data)[0]
    table = assignment_table(model, x)
    pred = table["leaf"] if hasattr(model, "decision_path") else model.predict(x)  # CoHiClust: leaf = cluster
    result: dict[str, Any] = {"dataset": config.dataset, "split": config.evaluation_split, "n_samples": len(data)}
    result["label_free"] = label_free_evaluation(model, x, table, seed=0)
    if data.labels is not None:
        result["metrics"] = _metrics_for(model, data, pred)
        hierarchy = getattr(model, "hierarchy_", None)
        if hierarchy is not None:
            from hiclust.report.evaluation import hierarchy_evaluation

            leaves = model.predict_leaf(x) if hasattr(model, "predict_leaf") else pred  # the tree's own leaves
            result.update(hierarchy_evaluation(hierarchy, leaves, data.labels.numpy(), data.class_names))
    atomic_write_text(Path(run_dir) / "evaluation.json", json.dumps(result, indent=2))
    return result


def _print_metrics(metrics: dict[str, float], prefix: str = "") -> None:
    order = ["nmi", "acc", "ari", "dp", "leaf_purity"]
    shown = [f"{k.upper() if k != 'leaf_purity' else 'leaf purity'}={metrics[k]:.4f}" for k in order if k in metrics]
    print(prefix + "  ".join(shown))


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from hiclust.runs import RunConfig, load_config_file, made_by

    preset = load_config_file("digits")
    params = dict(preset["params"])
    if args.epochs is not None:
        # keep the preset's proportions (half of the epochs for NT-Xent pre-training), fewer where
        # the tree's prunings (one per epoch) would not fit after it
        n_prune = 2 ** params["depth"] - params["n_clusters"]
        if args.epochs < max(n_prune, 1):
            raise ValueError(f"--epochs must be at least {max(n_prune, 1)} for the demo: its tree of depth "
                             f"{params['depth']} prunes {n_prune} of its {2 ** params['depth']} leaves, one per epoch")
        share = params["pretrain_epochs"] / params["epochs"]
        params["epochs"] = args.epochs
        params["pretrain_epochs"] = min(int(args.epochs * share), args.epochs - n_prune)
    params["device"] = args.device
    config = RunConfig(method=preset["method"], dataset=preset["dataset"], split=preset.get("split", "all"), params=params)
    out = Path(args.out)
    if (out / "run.json").exists() and made_by(out) != "demo":
        # The demo replaces its own earlier output only; a training run is the user's work.
        raise ValueError(f"--out {out} holds a run that the demo did not write (hiclust train's, or an unreadable "
                         "one); the demo replaces only its own earlier output: choose another --out")
    print(f"hiclust demo: CoHiClust on scikit-learn digits (1,797 images 8x8, 10 classes), {params['epochs']} epochs -> {args.out}")
    started = time.perf_counter()
    _, metrics = run_training(args.out, config, overwrite=True, summary=True, command="demo")
    _print_metrics(metrics, prefix=f"done in {time.perf_counter() - started:.0f} s: ")
    print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'tree.png'}")
    return 0


def _refuse_resume_conflicts(args: argparse.Namespace, config: Any) -> None:
    """``--resume`` continues the run as it was configured: flags that would change it are refused
    (the estimator's parameters are checked against the checkpoint later; ``--epochs`` may grow)."""
    def differs(given: Any, stored: Any) -> bool:
        return given is not None and given != stored

    same_dir = args.out is None or Path(args.out).resolve() == Path(args.resume).resolve()
    conflicts = [flag for flag, bad in (
        ("--out", not same_dir), ("--config", args.config is not None), ("--overwrite", args.overwrite),
        ("--method", differs(args.method, config.method)), ("--split", differs(args.split, config.split)),
        ("--eval-split", differs(args.eval_split, config.eval_split)),
        ("--instance-split", differs(args.instance_split, config.instance_split)),
        ("--image-size", differs(args.image_size, config.image_size)), ("--strict", args.strict and not config.strict),
        ("--label-column", differs(args.label_column, config.label_column)),
        ("--id-column", differs(args.id_column, config.id_column)),
    ) if bad]
    if conflicts:
        raise ValueError(
            f"{', '.join(conflicts)} cannot change the run being resumed in {args.resume}; resume without "
            f"{'it' if len(conflicts) == 1 else 'them'} (--dataset/--root may point at its data), or train a new run "
            "with another --out"
        )


def _auto_augmentation_note(method: str, params: dict[str, Any], data: Any) -> str:
    """'--augmentation auto: the digits preset (...)' when the estimator picks its preset by dataset,
    else ''. What 'auto' resolves to depends on the dataset's name and image size."""
    from hiclust.data.augment import DATASET_AUGMENTATION, preset_and_settings, preset_name_for_dataset
    from hiclust.methods import METHODS

    aug = params.get("augmentation", METHODS[method]().get_params().get("augmentation"))
    if not isinstance(aug, (str, dict)):  # None (off) or a module
        return ""
    preset, settings = preset_and_settings(aug)
    if preset != "auto":
        return ""
    channels, height, _ = data.image_shape
    size = params.get("image_size") or height
    name = preset_name_for_dataset(data.name or "", size, channels)
    known = (data.name or "").strip().lower().replace("-", "_") in DATASET_AUGMENTATION
    replaced = [f"{k}={v}" for k, v in settings.items()]
    return (f"--augmentation auto: the {name} preset" + (f" with {', '.join(replaced)}" if replaced else "")
            + f" (for {data.name if known else f'{channels}-channel images'} seen at {size} px)")


def _cmd_train(args: argparse.Namespace) -> int:
    from hiclust.runs import RunConfig, load_config_file, read_run_config

    if args.resume:
        config = read_run_config(args.resume)
        out = args.resume
        _refuse_resume_conflicts(args, config)
        # The data may have moved: --dataset/--root point at it (its fingerprint must match).
        config = override_data(config, args.dataset, args.root)
        _check_method_flags(config.method, args)
        overrides = {p: v for k, v in vars(args).items() if k.startswith("param_") and v is not None for p in [k[6:]]}
        config.params.update(overrides)  # e.g. more --epochs; changed identity is refused by the checkpoint
    else:
        base: dict[str, Any] = load_config_file(args.config) if args.config else {}
        method = args.method or base.get("method", "cohiclust")
        dataset = args.dataset or base.get("dataset")
        if not dataset:
            raise ValueError("give --dataset NAME (or a --config that names one)")
        if not args.out:
            raise ValueError("give --out RUN_DIR (or --resume RUN_DIR)")
        _check_method_flags(method, args)
        params = dict(base.get("params", {}))
        params.update({k[6:]: v for k, v in vars(args).items() if k.startswith("param_") and v is not None})
        config = RunConfig(
            method=method, dataset=dataset, split=args.split or base.get("split", "all"),
            root=args.root or base.get("root"), params=params,
            image_size=args.image_size if args.image_size is not None else base.get("image_size"), strict=args.strict,
            eval_split=args.eval_split or base.get("eval_split"),
            instance_split=args.instance_split or base.get("instance_split"),
            label_column=args.label_column or base.get("label_column"),
            id_column=args.id_column or base.get("id_column"),
        )
        out = args.out
    _, metrics = run_training(
        out, config, resume=bool(args.resume), overwrite=args.overwrite, download=args.download,
        checkpoint_every=args.checkpoint_every, summary=True,
    )
    if metrics:
        _print_metrics(metrics)
    from hiclust.distributed import is_main

    if is_main():
        print(f"run directory: {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from hiclust.report.evaluation import format_evaluation

    result = evaluate_run(args.run_dir, args.device, dataset=args.dataset, root=args.root, labels=args.labels)
    print(format_evaluation(result))
    print(f"wrote {Path(args.run_dir) / 'evaluation.json'}")
    return 0


def add_streaming_flags(p: argparse.ArgumentParser) -> None:
    """--max-memory / --workers for every command that reads a dataset (applied in ``main``)."""
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="memory budget for an image folder, a shard directory or a .npy feature matrix, e.g. 800M or 16G "
                   "(default auto: a quarter of this machine's memory; 0: always stream); larger data is streamed from "
                   "disk a batch at a time (a note on stderr says so)")
    # Read as text and checked in main: argparse's own int check would answer "abc" or "-5G"
    # with its usage dump instead of the one-line error.
    p.add_argument("--workers", default=None, metavar="N",
                   help="data-loading processes that read and decode streamed images ahead of the network (default: "
                   "half the CPU cores, at most 8; 0 reads in the main process)")


def _add_data_location_flags(p: argparse.ArgumentParser) -> None:
    """--dataset / --root for the commands that read a run whose data has moved (and the
    streaming flags)."""
    add_streaming_flags(p)
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help="where the run's data is now, e.g. features:NEW/PATH.npy or folder:NEW/DIR (default: "
                   "as recorded in run.json); it must be the same data (count, shape, content)")
    p.add_argument("--root", default=None, metavar="DIR", help="the directory holding the dataset files now "
                   "(registered datasets such as mnist; default: as recorded in run.json)")


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``hiclust train``: added when the command is used (they are derived from the
    estimators' declarations, whose modules import torch)."""
    p.add_argument("--dataset", help="digits, mnist5k, mnist, fashion_mnist, cifar10, cifar100_20, stl10, imagenet10, "
                   "imagenet_dogs, folder:PATH (images), npy:PATH (an image array), shards:DIR (written by `hiclust "
                   "shard`), features:PATH (a feature "
                   "matrix: .npy, .npz with X[/y], .csv or .parquet; CoHiClust splits its standardized rows directly below "
                   "1,000 rows and trains an MLP on larger ones, see --backbone)")
    p.add_argument("--label-column", default=None, metavar="NAME",
                   help="features:PATH: the column (.csv/.parquet) or array (.npz) holding labels (optional; .npz "
                   "files use 'y' or 'labels' when present)")
    p.add_argument("--id-column", default=None, metavar="NAME",
                   help="features:PATH: the column or array holding item ids (shown in assignments.csv and reports)")
    p.add_argument("--root", help="directory holding the dataset files (default ~/.cache/hiclust/datasets or $HICLUST_DATA; "
                   "for imagenet10/imagenet_dogs the ImageNet folder holding train/<wnid>/)")
    add_streaming_flags(p)
    p.add_argument("--split", default=None, help="train, test or all (default all: train+test, the usual clustering "
                   "protocol); stl10 also has unlabeled")
    p.add_argument("--eval-split", default=None, help="the split metrics, tree picture and `evaluate` use when it is "
                   "not the training split (STL-10's CoHiClust recipe: --split unlabeled --eval-split all)")
    p.add_argument("--instance-split", default=None, help="--method cc: a split trained with the instance loss alone "
                   "at the start of every epoch (CC's STL-10 recipe: --instance-split unlabeled)")
    p.add_argument("--download", action="store_true", help="download missing dataset files (torchvision datasets)")
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--config", help="YAML preset: a path or a bundled name (digits, mnist, fashion_mnist, cifar10, ...)")
    from hiclust.methods import METHODS

    p.add_argument("--method", default=None,
                   help=f"cohiclust (default), or one of {', '.join(m for m in METHODS if m != 'cohiclust')}")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint (Ctrl-C "
                   "during training writes one at the end of the current epoch, prints this command and exits with "
                   "status 130; a second Ctrl-C stops at once, keeping the last checkpoint)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out (the new run is built "
                   "beside it and replaces it only when finished)")
    p.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints (default 10)")
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="resize every image to S x S pixels on load (image folders of mixed sizes); the network "
                   "then sees random crops of it resized to --crop-size (default: S)")
    p.add_argument("--strict", action="store_true", help="fail on unreadable image files instead of skipping them")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice, one per "
                   "core); on a small or busy CPU, --threads 1 is often faster for small networks (8x8 or 28 px "
                   "images, feature matrices)")
    _add_param_flags(p)


class _OneLineErrors(argparse.ArgumentParser):
    """Usage errors as one line (what was wrong, the nearest flag, where the help is), exit 2."""

    def error(self, message: str) -> NoReturn:
        import difflib

        known = sorted({o for a in self._all_actions() for o in a.option_strings if o.startswith("--")})
        hints = []
        if message.startswith("argument --") and "expected one argument" in message:
            # "--resume" given without its value: name the value it needs, not a "nearest" flag.
            flag = message.split()[1].split("/")[0].rstrip(":")
            action = next((a for a in self._all_actions() if flag in a.option_strings), None)
            if action is not None:
                hints.append(f"; give it a value: {flag} {action.metavar or action.dest.upper()}")
        for tok in (t.rstrip(":,;.") for t in message.split() if t.startswith("--")):
            if tok in known:
                continue
            starts = [k for k in known if k.startswith(tok)]  # "--n": the flags it begins
            near = starts if 0 < len(starts) <= 5 else difflib.get_close_matches(tok, known, n=1)
            if near:
                hints.append(f"; did you mean {' or '.join(near)}?")
        subs = [a for a in self._actions if isinstance(a, argparse._SubParsersAction)]
        where = f"{self.prog} --help"
        if subs:  # the top parser reports a subcommand's unknown flags: name that subcommand
            given = [t for t in getattr(self, "argv", []) if t in subs[0].choices]
            where = f"{self.prog} {given[0] if given else 'COMMAND'} --help"
        self.exit(2, f"{self.prog}: error: {message}{''.join(hints)} (see {where})\n")

    def _all_actions(self) -> list[argparse.Action]:
        """This parser's actions and those of its subcommands that were used (populated)."""
        actions = list(self._actions)
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if getattr(sub, "_populate", None) is None:  # only parsers already built
                        actions += list(sub._actions)
        return actions


class _LazyParser(_OneLineErrors):
    """A subcommand's parser whose arguments are added by ``populate(parser)`` only when it is
    used (parsing, help), so that ``hiclust --help`` and the other commands never import what
    they do not need (torch, for the estimator flags of ``train``)."""

    def __init__(self, *args: Any, populate: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs: Any) -> None:
        # No prefix matching of flags: "--n-cluster" or "--k" must be refused, not silently taken
        # for --n-clusters or --kmeans-weight.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._populate = populate

    def _ensure_populated(self) -> None:
        populate, self._populate = self._populate, None
        if populate is not None:
            populate(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._ensure_populated()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._ensure_populated()
        return super().format_help()

    def format_usage(self) -> str:
        self._ensure_populated()
        return super().format_usage()


def build_parser() -> argparse.ArgumentParser:
    """The ``hiclust`` parser: every subcommand, ``train``'s flags added only when it is used."""
    from hiclust import __version__

    parser = _OneLineErrors(prog="hiclust", description="Contrastive hierarchical clustering and its baselines.",
                            allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"hiclust {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_LazyParser)

    p = sub.add_parser("demo", help="train CoHiClust on scikit-learn's digits on the CPU; writes metrics and a tree picture")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo); an earlier demo's output "
                   "there is replaced when the new one is done, a run of hiclust train is refused")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (200; half of them are NT-Xent pre-training)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    # The demo's network is tiny (8x8 inputs): a second CPU thread gains little, and on a machine
    # whose cores are busy, two threads can make it many times slower.
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train a method on a dataset into a run directory", populate=_add_train_arguments)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "evaluate", help="metrics of a run overall and per tree level; writes evaluation.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Route the run's data through its model and report:\n"
                    "  always       leaf sizes, balance per tree level (1 = equal sizes), the mean probability of\n"
                    "               the leaves and of each decision taken, and the silhouette of the leaves on the\n"
                    "               learned representation (the whitened rows for a feature matrix under\n"
                    "               1,000 rows, split directly; none of these needs labels)\n"
                    "  with labels  NMI / ACC / ARI / dendrogram purity / leaf purity overall and per level, the\n"
                    "               super-groups of each level and the leaves x classes table\n"
                    "Writes RUN_DIR/evaluation.json.\n\n"
                    "example: hiclust evaluate runs/demo\n"
                    "         hiclust evaluate runs/embeddings --labels labels.txt   (data stored without labels)",
    )
    p.add_argument("run_dir", help="run directory written by 'hiclust train'")
    _add_data_location_flags(p)
    p.add_argument("--labels", default=None, metavar="FILE",
                   help="the items' true labels, for data stored without them (e.g. a .npy feature matrix): a .npy "
                   "array or a text file with one label per line, in the order of the run's items (assignments.csv)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.set_defaults(func=_cmd_evaluate)

    for module in EXTENSIONS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the ``hiclust`` command line; returns the exit status: 0, 2 for bad input (one line
    on stderr, nothing written), 130 after Ctrl-C (one line; ``train`` names the ``--resume``
    command)."""
    try:  # building the parser imports torch (seconds): a Ctrl-C there is one line too
        parser = build_parser()
        argv = _join_negative_values(sys.argv[1:] if argv is None else list(argv))
        parser.argv = argv  # for the usage error's "see hiclust train --help"
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("hiclust: interrupted before the command started; nothing was written", file=sys.stderr)
        return 130
    image_size = getattr(args, "image_size", None)
    if image_size is not None and image_size < 1:  # train, predict, shard, ...: before anything is read
        keep = "the run's" if args.command == "predict" else "the images' own"
        print(f"hiclust {args.command}: error: --image-size must be a positive number of pixels, got {image_size} "
              f"(leave it out to keep {keep} size)", file=sys.stderr)
        return 2
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            parser.error("--threads must be >= 1")
        import torch

        torch.set_num_threads(threads)
    streams = hasattr(args, "max_memory")  # the commands that read a dataset (add_streaming_flags)
    if streams:
        problem = _configure_streaming(args)
        if problem:
            print(f"hiclust {args.command}: error: {problem}", file=sys.stderr)
            return 2
    import os
    import warnings

    # Under torchrun (WORLD_SIZE > 1): join the process group; DDP training, rank 0 writes.
    # (Without torch loaded nor torchrun's WORLD_SIZE there is no group to join or leave: the
    # commands that need no torch, e.g. flat-table, do not import it.)
    started_group = False
    if "torch" in sys.modules or os.environ.get("WORLD_SIZE", "1") != "1":
        from hiclust import distributed as dist_utils

        started_group = not dist_utils.is_distributed() and dist_utils.init_from_env()

    old_format = warnings.formatwarning
    # Warnings (e.g. skipped unreadable images) as one clean line each, in command-line terms.
    # A command without --strict (tree, report: they read the run's data as the run did) does not
    # offer it.
    has_strict = hasattr(args, "strict")

    def in_command_terms(message: str) -> str:
        # An estimator's warning names its parameters: written as the flags of the command's
        # method (an estimator that warns has been imported: commands without one never load it).
        if not hasattr(args, "method") or "hiclust.methods" not in sys.modules:
            return message
        from hiclust.methods import METHODS

        method = METHODS.get(args.method or "cohiclust")
        return in_flag_terms(method, message) if method is not None else message

    warnings.formatwarning = lambda message, category, *rest, **kw: (
        f"hiclust {args.command}: warning: {one_line(in_command_terms(str(message)), strict_flag=has_strict)}\n")
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (e.g. `hiclust evaluate RUN | head`): what it read was enough, and
        # the files were written. Send the rest of stdout nowhere, so the exit flush does not fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by the broken pipe
    except (ValueError, OSError, RuntimeError, TypeError, FloatingPointError, ImportError) as exc:
        # Known user errors (and a missing optional package, e.g. pyarrow for .parquet): one clear
        # line instead of a traceback (HICLUST_DEBUG=1 shows it).
        if os.environ.get("HICLUST_DEBUG"):
            raise
        print(f"hiclust {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # Ctrl-C: one line (for train: what was kept and the --resume command), exit 130, no traceback.
        print(f"hiclust {args.command}: {one_line(str(exc)) or 'interrupted'}", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = old_format
        if streams:  # back to the defaults: main may run again in this process (tests, notebooks)
            from hiclust.data.streaming import configure

            configure()
        if started_group:
            # No barrier: after a failure on one rank alone the others must not wait for it.
            dist_utils.shutdown(wait_for_all=False)


_VALUE_FLAGS = ("--max-memory", "--workers")


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--max-memory -5G`` as ``--max-memory=-5G`` (likewise ``--workers``): argparse takes a
    value that starts with "-" and is not a plain number for an option and answers with its
    usage dump; joined, the value reaches the flag's own one-line check."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":  # what follows is positional
            return out + argv[i:]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if tok in _VALUE_FLAGS and nxt is not None and nxt.startswith("-") and not nxt.startswith("--") and nxt != "-h":
            out.append(f"{tok}={nxt}")
            i += 2
            continue
        out.append(tok)
        i += 1
    return out


def _configure_streaming(args: argparse.Namespace) -> str | None:
    """Applies --max-memory / --workers and the streaming notice for this command; returns the
    error (one line, in flag terms) of a bad value, None when both are good."""
    from hiclust.data.streaming import configure

    workers: int | None = None
    if args.workers is not None:
        try:
            workers = int(args.workers)
        except ValueError:
            workers = None
        if workers is None or workers < 0:
            return (f"--workers must be a whole number >= 0 (0 reads in the main process), "
                    f"got {args.workers!r}")
    try:
        configure(max_memory=args.max_memory, workers=workers, on_stream=_streaming_notice(args))
    except ValueError as exc:
        return f"--max-memory: {one_line(str(exc))}"
    return None


def _size_text(n: int) -> str:
    """Bytes in powers of 1024, as --max-memory reads them back: 4800 → "4.7 KiB"."""
    value, unit = float(n), "B"
    for next_unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def _streaming_notice(args: argparse.Namespace) -> Callable[[str, int, int], None]:
    """The ``on_stream`` callback of :func:`hiclust.data.streaming.configure` for this command:
    one line on stderr per dataset streamed (rank 0 only under torchrun), so that a run much
    slower than expected, or a budget set too low, is explained."""
    told: set[str] = set()
    given = args.max_memory is not None and str(args.max_memory).strip().lower() != "auto"
    origin = f"--max-memory {args.max_memory.strip()}" if given else "--max-memory auto: a quarter of this machine's memory"

    def notice(name: str, nbytes: int, budget: int) -> None:
        from hiclust import distributed as dist_utils

        line = (f"hiclust {args.command}: note: {name} takes {_size_text(nbytes)} in memory, more than the memory "
                f"budget of {_size_text(budget)} ({origin}); streaming it from disk a batch at a time (to hold it in "
                f"memory instead, raise --max-memory above {_size_text(nbytes)})")
        if line not in told and dist_utils.is_main():  # data loaded twice (training, evaluation split): once
            told.add(line)
            print(line, file=sys.stderr, flush=True)

    return notice


# The library's parameter names in messages that reach the command line, as its flags.
_API_TO_FLAGS = (("pass strict=True", "pass --strict"), ("pass image_size=S", "pass --image-size S"),
                 ("pass label_column=", "pass --label-column "),  # label_column='c' → --label-column 'c'
                 ("with label_column=NAME", "with --label-column NAME"), ("with id_column=NAME", "with --id-column NAME"))


def one_line(message: str, strict_flag: bool = True) -> str:
    r"""``message`` as one line for the terminal: line breaks folded into spaces, and the
    library's keyword arguments written as the command's flags (``strict=True`` → ``--strict``,
    ``image_size=S`` → ``--image-size S``, ``label_column='c'`` → ``--label-column 'c'``);
    ``strict_flag=False``: for a command without ``--strict``, its hint is left out.

    >>> one_line("skipped 1 of 5 files\n  (pass strict=True to make this an error)")
    'skipped 1 of 5 files (pass --strict to make this an error)'
    """
    text = " ".join(part.strip() for part in message.splitlines() if part.strip())
    if not strict_flag:
        text = text.replace(" (pass strict=True to make this an error)", "")
    for api, flag in _API_TO_FLAGS:
        text = text.replace(api, flag)
    return text


if __name__ == "__main__":
    sys.exit(main())
