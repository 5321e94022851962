"""Command line: ``hiclust demo | train | evaluate`` and the subcommands registered by
``hiclust.report.cli`` (tree, report, predict) and ``hiclust.bench`` (bench)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "run_training", "evaluate_run", "load_run_model", "load_run_data"]

# Modules that add subcommands: each defines register(subparsers).
EXTENSIONS: list[str] = [
    "hiclust.report.cli",
    "hiclust.bench",
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
        g.add_argument(flag, dest=f"param_{spec['param']}", type=spec["type"], default=None,
                       metavar=spec["type"].__name__.upper(), help=f"{spec['help']} [{takers}]".replace("%", "%%"))


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


def validate_estimator(model: Any) -> None:
    """The estimator's parameter validation with the error in command-line terms (flag names)."""
    import re

    from hiclust.methods.params import InvalidParameterError

    try:
        model._validate_params()
    except InvalidParameterError as exc:
        msg = re.sub(r"^The '(\w+)' parameter of \w+",
                     lambda m: flag_for_param(type(model), m.group(1)), str(exc))
        raise ValueError(msg) from None


def load_run_data(config: Any, download: bool = False):
    from hiclust.data import load_dataset

    return load_dataset(
        config.dataset, root=config.root, split=config.split, download=download,
        image_size=config.image_size, strict=config.strict,
    )


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
    from hiclust.metrics import evaluate, leaf_purity

    y = data.labels.numpy()
    hierarchy = getattr(model, "hierarchy_", None)
    if hasattr(model, "predict_leaf"):
        # A tree with more leaves than clusters (DeepECT): DP and leaf purity on the full tree,
        # the other metrics on the flat partition.
        leaf = model.predict_leaf(data)
        out = evaluate(y, labels_pred, hierarchy.to_linkage() if hierarchy.n_leaves > 1 else None,
                       leaf if hierarchy.n_leaves > 1 else None)
        out["leaf_purity"] = leaf_purity(y, leaf)
        return out
    if hierarchy is not None and hierarchy.n_leaves > 1:
        return evaluate(y, labels_pred, hierarchy.to_linkage(), labels_pred)
    return evaluate(y, labels_pred)


def run_training(
    run_dir: str | Path,
    config: Any,
    *,
    resume: bool = False,
    overwrite: bool = False,
    download: bool = False,
    checkpoint_every: int = 10,
    picture: bool = True,
) -> tuple[Any, dict[str, float] | None]:
    """Trains ``config`` into ``run_dir``. Data and parameters are validated before anything is
    written. Returns (fitted estimator, final metrics or None without labels)."""
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
    data = load_run_data(config, download)
    if download and main_rank:
        dist_utils.barrier()
    model = make_estimator(config.method, dict(config.params))
    if dist_utils.is_distributed() and not getattr(model, "_SUPPORTS_DISTRIBUTED", False):
        raise ValueError(
            f"data-parallel training (torchrun, {dist_utils.world_size()} processes) is not implemented for "
            f"--method {config.method}; run it in a single process (without torchrun)"
        )
    validate_estimator(model)
    if hasattr(model, "check_params"):
        model.check_params(data)
    checkpoint = Path(run_dir) / "checkpoint.pt"
    records: list[dict[str, Any]] = []  # history.jsonl: the resumed checkpoint's records, then new ones
    if resume and checkpoint.exists() and hasattr(model, "_check_resume_config"):
        # Refuse an incompatible checkpoint before run.json is rewritten.
        from hiclust.checkpoint import load_checkpoint

        saved_config, saved_state = load_checkpoint(checkpoint, expected_class=type(model).__name__)
        model._check_resume_config(saved_config, checkpoint)
        records = list(saved_state.get("history", []))
    if main_rank:
        run_dir = prepare_run_dir(run_dir, config, overwrite=overwrite, resume=resume)
    dist_utils.barrier()  # the run directory (and a resumed checkpoint) exists before any rank trains
    run_dir = Path(run_dir)

    def write_history(record: dict[str, Any]) -> None:
        records.append(record)
        lines = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write_text(run_dir / "history.jsonl", lines)

    model.fit(
        data, checkpoint=run_dir / "checkpoint.pt", checkpoint_every=checkpoint_every, resume=resume,
        callback=write_history,
    )
    if not main_rank:
        return model, None
    model.save(run_dir / "model.pt")
    metrics = None
    if data.labels is not None:
        metrics = _metrics_for(model, data, model.labels_)
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    if picture and getattr(model, "hierarchy_", None) is not None:
        from hiclust.report import plot_tree

        plot_tree(model, data, out=run_dir / "tree.png")
    return model, metrics


def evaluate_run(run_dir: str | Path, device: str = "auto") -> dict[str, Any]:
    """Predicts the run's dataset with its model; metrics overall and per tree level."""
    from hiclust.checkpoint import atomic_write_text

    model, config = load_run_model(run_dir, device)
    data = load_run_data(config)
    if data.labels is None:
        raise ValueError(f"the dataset {config.dataset!r} has no labels; evaluation needs ground-truth classes")
    pred = model.predict(data)
    result: dict[str, Any] = {"dataset": config.dataset, "split": config.split, "n_samples": len(data)}
    result["metrics"] = _metrics_for(model, data, pred)
    hierarchy = getattr(model, "hierarchy_", None)
    if hierarchy is not None:
        from hiclust.report.evaluation import hierarchy_evaluation

        leaves = model.predict_leaf(data) if hasattr(model, "predict_leaf") else pred  # the tree's own leaves
        result.update(hierarchy_evaluation(hierarchy, leaves, data.labels.numpy(), data.class_names))
    atomic_write_text(Path(run_dir) / "evaluation.json", json.dumps(result, indent=2))
    return result


def _print_metrics(metrics: dict[str, float], prefix: str = "") -> None:
    order = ["nmi", "acc", "ari", "dp", "leaf_purity"]
    shown = [f"{k.upper() if k != 'leaf_purity' else 'leaf purity'}={metrics[k]:.4f}" for k in order if k in metrics]
    print(prefix + "  ".join(shown))


def _cmd_demo(args: argparse.Namespace) -> int:
    import time

    from hiclust.runs import RunConfig, load_config_file

    preset = load_config_file("digits")
    params = dict(preset["params"])
    if args.epochs is not None:
        # keep the preset's proportions: a quarter of the epochs for NT-Xent pre-training
        params["epochs"] = args.epochs
        params["pretrain_epochs"] = args.epochs // 4
    params["device"] = args.device
    config = RunConfig(method=preset["method"], dataset=preset["dataset"], split=preset.get("split", "all"), params=params)
    print(f"hiclust demo: CoHiClust on scikit-learn digits (1,797 images 8x8, 10 classes), {params['epochs']} epochs -> {args.out}")
    started = time.perf_counter()
    _, metrics = run_training(args.out, config, overwrite=True)
    _print_metrics(metrics, prefix=f"done in {time.perf_counter() - started:.0f} s: ")
    print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'tree.png'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from hiclust.runs import RunConfig, load_config_file, read_run_config

    if args.resume:
        config = read_run_config(args.resume)
        out = args.resume
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
        )
        out = args.out
    _, metrics = run_training(
        out, config, resume=bool(args.resume), overwrite=args.overwrite, download=args.download,
        checkpoint_every=args.checkpoint_every,
    )
    if metrics:
        _print_metrics(metrics)
    from hiclust.distributed import is_main

    if is_main():
        print(f"run directory: {out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from hiclust.report.evaluation import format_evaluation

    result = evaluate_run(args.run_dir, args.device)
    print(format_evaluation(result))
    print(f"wrote {Path(args.run_dir) / 'evaluation.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiclust", description="Contrastive hierarchical clustering and its baselines.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train CoHiClust on scikit-learn's digits on the CPU; writes metrics and a tree picture")
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo; replaced if it exists)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (200; a quarter of them are NT-Xent pre-training)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda")
    # The demo's network is tiny (8x8 inputs): a second CPU thread gains little, and on a machine
    # whose cores are busy, two threads can make it many times slower.
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("train", help="train a method on a dataset into a run directory")
    p.add_argument("--dataset", help="digits, mnist5k, mnist, fashion_mnist, cifar10, cifar100_20, stl10, folder:PATH, npy:PATH")
    p.add_argument("--root", help="directory holding the dataset files (default ~/.cache/hiclust/datasets or $HICLUST_DATA)")
    p.add_argument("--split", default=None, help="train, test or all (default all: train+test, the usual clustering protocol)")
    p.add_argument("--download", action="store_true", help="download missing dataset files (torchvision datasets)")
    p.add_argument("--out", help="run directory to create")
    p.add_argument("--config", help="YAML preset: a path or a bundled name (digits, mnist, fashion_mnist, cifar10, ...)")
    from hiclust.methods import METHODS

    p.add_argument("--method", default=None,
                   help=f"cohiclust (default), or one of {', '.join(m for m in METHODS if m != 'cohiclust')}")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--checkpoint-every", type=int, default=10, help="epochs between checkpoints (default 10)")
    p.add_argument("--image-size", type=int, default=None, help="resize every image to this size on load (image folders of mixed sizes)")
    p.add_argument("--strict", action="store_true", help="fail on unreadable image files instead of skipping them")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice, one per core)")
    _add_param_flags(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="metrics of a run overall and per tree level; writes evaluation.json")
    p.add_argument("run_dir")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_evaluate)

    for module in EXTENSIONS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            parser.error("--threads must be >= 1")
        import torch

        torch.set_num_threads(threads)
    from hiclust import distributed as dist_utils

    # Under torchrun (WORLD_SIZE > 1): join the process group; DDP training, rank 0 writes.
    started_group = not dist_utils.is_distributed() and dist_utils.init_from_env()
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError, TypeError, FloatingPointError) as exc:
        # Known user errors: one clear line instead of a traceback (HICLUST_DEBUG=1 shows it).
        import os

        if os.environ.get("HICLUST_DEBUG"):
            raise
        print(f"hiclust {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if started_group:
            import torch.distributed

            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
