"""``xtalscreen train``, ``train-head``, ``evaluate``, ``ensemble``, ``tune`` and ``study``."""

from __future__ import annotations

import json
import sys

from xtalscreen.cli import add_command
from xtalscreen.errors import ParameterError

_DATA_HELP = ("dataset: a folder with labels.csv (xtalscreen simulate / label output), a "
              "DiffraNet-style <split>/<class>/ tree, a MARCO-style <class>/ tree of drop images "
              "(--target marco), a labels .csv, or an (id)h5 file with --annotations")
_TARGETS = ["ke", "diffranet", "binary", "marco"]
#: Model used when --model is not given (and no --init names one).
_DEFAULT_MODEL = {"marco": "c4_cnn"}


def _kv(items) -> dict:
    """``["a=1", "b=x,y"]`` -> {"a": 1, "b": "x,y"} (values parsed as JSON when they can be)."""
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise ParameterError(f"expected KEY=VALUE, got {it!r}")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def register(sub) -> None:
    p = add_command(
        sub, "train", help="train a frame classifier (hit/maybe/miss, DiffraNet classes, hit/miss) "
                           "or a drop classifier (MARCO's crystal/precipitate/clear/other)",
        description="Train a CNN on labelled frames with class-balanced mini-batches, SGD with momentum "
                    "(or AdamW) and paper 001's exponential learning-rate decay; checkpoints (last.pt, "
                    "best.pt), metrics.jsonl and train.json go to --out. With --target marco it trains "
                    "a drop classifier on a folder of drop images in the MARCO layout (DIR/<class>/*.jpg, "
                    "class = crystal, precipitate, clear, other or a mapped class name; or "
                    "DIR/<split>/<class>/), resizing whole images to the model input; its best.pt "
                    "works with xtalscreen drops run/score --model. --init fine-tunes from an "
                    "existing model (a checkpoint, or 'demo').",
        examples="  xtalscreen simulate --preset cspad --n 2000 --out sim/\n"
                 "  xtalscreen train --data sim/ --model ke2018 --target ke --epochs 120 --out runs/ke/\n"
                 "  xtalscreen train --data sim/ --model spotcount --img-size 256 --target ke --optimizer adamw "
                 "--lr 0.002 --out runs/sc/\n"
                 "  xtalscreen simulate --preset cspad --n 10000 --split 70,15,15 --visibility measured "
                 "--out sim_cspad/\n"
                 "  xtalscreen train --data sim_cspad/ --model spotcount --windows --optimizer adamw --lr 0.002 "
                 "--no-balance --select keep_auc --epochs 32 --batches-per-epoch 80 --out runs/cspad/\n"
                 "  xtalscreen train --data sim_mixed/ --model spotcount --img-size 256 --preprocess bin=auto "
                 "--preprocess unbinned_up_to=2 --optimizer adamw --lr 0.002 --out runs/mixed/\n"
                 "  xtalscreen train --data sim/ --model li2018 --target binary --optimizer adamw --lr 1e-3 "
                 "--schedule step --out runs/li/\n"
                 "  xtalscreen train --data run7.h5 --annotations run7.labels.csv --out runs/r7/\n"
                 "  xtalscreen train --data sim/ --out runs/ke/ --resume runs/ke/last.pt --epochs 200\n"
                 "  xtalscreen train --data marco_images/ --target marco --model inception_v3 "
                 "--optimizer adamw --lr 1e-3 --epochs 30 --out runs/marco/\n"
                 "  xtalscreen drops export-training --db drops.sqlite agreed/\n"
                 "  xtalscreen train --data agreed/ --target marco --init runs/marco/best.pt --lr 1e-4 "
                 "--optimizer adamw --epochs 10 --out runs/marco-ft/\n"
                 "  xtalscreen drops score plate1/*.jpg --model runs/marco-ft/best.pt")
    p.add_argument("--data", required=True, help=_DATA_HELP)
    p.add_argument("--annotations", help="annotation file for an HDF5 --data (frame label [split] per line)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, logs)")
    p.add_argument("--model", help="registered model (xtalscreen.models.list_models()); default ke2018, "
                   "c4_cnn for --target marco, the --init checkpoint's model with --init")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="model argument, repeatable "
                   "(e.g. widths=[8,16,32,64], topology=3, in_chans=1 for grey drop images)")
    p.add_argument("--target", default="ke", choices=_TARGETS,
                   help="label scheme: ke = hit/maybe/miss, diffranet = 5 classes, binary = hit/miss, "
                        "marco = drop images (crystal/precipitate/clear/other)")
    p.add_argument("--img-size", type=int, help="network input edge in pixels after binning; for drop "
                   "images the size whole images are resized to (default: the model's; ke2018 720, "
                   "c4_cnn 128, inception_v3 299)")
    p.add_argument("--init", metavar="CKPT", help="fine-tune from this model: a best.pt/last.pt, a "
                   "drop-model .pt, or 'demo'; its architecture, weights and preprocessing are used "
                   "(the last layer starts afresh if its classes differ)")
    p.add_argument("--val-fraction", type=float, help="fraction of items without a split of their own "
                   "(e.g. MARCO <class>/ folders) used for validation, by a hash of the file name "
                   "(default: 80/10/10 %% train/val/test)")
    p.add_argument("--preprocess", action="append", metavar="KEY=VALUE",
                   help="preprocessing override, repeatable (e.g. bin=1, contrast=linear, max_shift=60)")
    p.add_argument("--epochs", type=int, default=120)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches-per-epoch", type=int, default=100, help="0 = one pass over the data")
    p.add_argument("--no-balance", action="store_true", help="plain shuffled batches instead of class-balanced")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate")
    p.add_argument("--lr-end", type=float, default=1e-4, help="final learning rate (exponential schedule)")
    p.add_argument("--schedule", default="exponential", choices=["exponential", "step", "constant"])
    p.add_argument("--step-size", type=int, default=10, help="epochs between step decays")
    p.add_argument("--gamma", type=float, default=0.1, help="step decay factor")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--no-augment", action="store_true", help="no random crops/flips/turns/scaling")
    p.add_argument("--patience", type=int, help="early stopping: epochs without a better validation score (--select)")
    p.add_argument("--bn-batches", type=int, default=0, metavar="N",
                   help="before each validation, set BatchNorm running statistics to the mean over N "
                        "training batches (precise BatchNorm, per input size); 0: momentum estimates")
    p.add_argument("--select", default="accuracy", choices=["accuracy", "loss", "keep_auc"],
                   help="what picks best.pt and drives --patience: validation accuracy, validation "
                        "loss, or (ke target) keep_auc, the AUC of p_hit + p_maybe against miss "
                        "averaged over the detector presets (how screen keeps frames)")
    p.add_argument("--count-loss", type=float, default=0.0, metavar="W",
                   help="weight of an auxiliary ordinal spot-count loss: a read-out of the model's "
                        "features learns 'at least k visible spots' for k = 1..24 from each frame's "
                        "--count-column (teaches the count behind the Ke classes); 0: none")
    # the choices are train.loop.COUNT_COLUMNS, not imported here (it adds ~0.17 s to CLI start-up)
    p.add_argument("--count-column", default="n_spots_measured",
                   choices=["n_spots_measured", "n_spots_expected", "n_spots"],
                   help="labels.csv column with each frame's visible-spot count (xtalscreen simulate "
                        "writes n_spots_measured and n_spots_expected)")
    p.add_argument("--windows", action="store_true",
                   help="cut every frame once to its training window (assembled, binned as --preprocess "
                        "says, the input plus max_shift pixels each side; kept in OUT/windows/, reused by "
                        "--resume) and train on those: the same inputs at a fraction of the work on large "
                        "detectors. The checkpoints keep the raw-frame preprocessing (screen, evaluate and "
                        "calibrate use them on the raw frames)")
    p.add_argument("--windows-workers", type=int, metavar="N",
                   help="processes cutting the windows (default: the CPU count, at most 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--resume", help="continue from a last.pt written by an earlier run of the same settings")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_train)

    h = add_command(
        sub, "train-head", help="fit a new last layer on a trained network's features (linear probe)",
        description="Compute a trained network's pre-logit features (for spotcount its spot counts), "
                    "averaged over --views test-time orientations, on labelled frames; fit a "
                    "multinomial logistic regression to them (C by cross-validation unless given); "
                    "write a copy of the network with that regression as its last layer. The rest "
                    "of the network is unchanged, so this takes one pass over the data instead of "
                    "a training run, and gives the shipped model other label schemes (e.g. "
                    "DiffraNet's five classes) or the user's own labels. evaluate and screen use "
                    "the recorded --views by default.",
        examples="  xtalscreen train-head --model default --data sim_d5/ --target diffranet --split all "
                 "--views 8 --out d5.pt\n"
                 "  xtalscreen evaluate --model d5.pt --data sim_d5_test/ --split all --out rep/\n"
                 "  xtalscreen train-head --model runs/ke/best.pt --data my_labels.csv --target binary "
                 "--c 1.0 --out mine.pt")
    h.add_argument("--model", default="default", help="the trained network: 'default' or a checkpoint")
    h.add_argument("--data", required=True, help=_DATA_HELP)
    h.add_argument("--annotations", help="annotation file for an HDF5 --data")
    h.add_argument("--target", default="diffranet", choices=[t for t in _TARGETS if t != "marco"],
                   help="label scheme of the new head")
    h.add_argument("--split", default="train", help="frames to fit on: train, val, test or all")
    h.add_argument("--views", type=int, choices=[1, 2, 4, 8], default=1,
                   help="test-time views the features are averaged over (recorded in the file)")
    h.add_argument("--c", type=float, help="inverse regularisation strength; default: chosen by "
                                           "5-fold cross-validation")
    h.add_argument("--out", required=True, help="checkpoint to write")
    h.add_argument("--batch-size", type=int, default=64)
    h.add_argument("--device", default="auto")
    h.add_argument("--workers", type=int, default=0)
    h.add_argument("--no-progress", action="store_true")
    h.set_defaults(func=run_train_head)

    e = add_command(
        sub, "evaluate", help="evaluate a trained model: metrics, confusion matrices, ROC, calibration",
        description="Run a checkpoint over a labelled dataset and write a report folder: metrics.json, "
                    "report.md (tables), confusion/ROC/reliability PNGs, predictions.csv, and optionally "
                    "saliency maps and a t-SNE embedding of the features.",
        examples="  xtalscreen evaluate --model runs/ke/best.pt --data sim/ --split test --out reports/ke/\n"
                 "  xtalscreen evaluate --model runs/ke/best.pt --data sim/ --saliency 8 --embedding --out rep/\n"
                 "  xtalscreen evaluate --model runs/li/best.pt --data run7.h5 --annotations run7.labels.csv "
                 "--split all --out rep7/")
    e.add_argument("--model", required=True, help="checkpoint (best.pt / last.pt), or a shipped model: "
                                                  "default, diffranet5")
    e.add_argument("--data", required=True, help=_DATA_HELP)
    e.add_argument("--annotations", help="annotation file for an HDF5 --data")
    e.add_argument("--split", default="test", help="train, val, test or all")
    e.add_argument("--out", required=True, help="report folder")
    e.add_argument("--min-tpr", type=float, default=0.8, help="ROC operating point: lowest TPR allowed")
    e.add_argument("--saliency", type=int, default=0, metavar="N", help="draw N saliency maps")
    e.add_argument("--embedding", action="store_true", help="draw a t-SNE embedding of the features")
    e.add_argument("--views", type=int, choices=[1, 2, 4, 8],
                   help="test-time views averaged per frame (default: the checkpoint's own, else 1)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--device", default="auto")
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=run_evaluate)

    n = add_command(
        sub, "ensemble", help="average trained checkpoints into one model (mean of their probabilities)",
        description="Write one checkpoint holding several trained networks of the same classes, "
                    "target and preprocessing; its output is the log of their mean class "
                    "probability, so screen, evaluate and calibrate use it like any model "
                    "(one forward pass per member).",
        examples="  xtalscreen ensemble run_a/best.pt run_b/best.pt --out ens.pt\n"
                 "  xtalscreen screen 'runs/*.h5' --model ens.pt --out out/")
    n.add_argument("checkpoints", nargs="+", help="two or more trained checkpoints")
    n.add_argument("--out", required=True, help="ensemble checkpoint to write")
    n.set_defaults(func=run_ensemble)

    t = add_command(
        sub, "tune", help="search topology and hyperparameters (Optuna + Hyperband pruning)",
        description="Optuna TPE search over learning rate, momentum, weight decay, batch size and the "
                    "model's topology, pruning poor trials by validation accuracy per epoch (Hyperband). "
                    "With --storage the study is saved and a repeated command resumes it. Prints and "
                    "saves (results.md/json) the results table.",
        examples="  xtalscreen tune --data sim/ --model ke2018 --epochs 20 --trials 30 "
                 "--storage sqlite:///tune.db --out tune/\n"
                 "  xtalscreen tune --data diffranet/ --model deepfreak --target diffranet --trials 50 --out tune-df/")
    t.add_argument("--data", required=True, help=_DATA_HELP)
    t.add_argument("--annotations")
    t.add_argument("--out", required=True)
    t.add_argument("--model")
    t.add_argument("--model-arg", action="append", metavar="KEY=VALUE")
    t.add_argument("--target", default="ke", choices=_TARGETS)
    t.add_argument("--img-size", type=int)
    t.add_argument("--preprocess", action="append", metavar="KEY=VALUE")
    t.add_argument("--epochs", type=int, default=20, help="maximum epochs (budget) per trial")
    t.add_argument("--batches-per-epoch", type=int, default=100)
    t.add_argument("--trials", type=int, default=20, help="total trials in the study")
    t.add_argument("--storage", help="Optuna storage URL, e.g. sqlite:///tune.db (resumable)")
    t.add_argument("--study-name", default="xtalscreen-tune")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--workers", type=int, default=0)
    t.set_defaults(func=run_tune)

    s = add_command(
        sub, "study", help="paper 001's studies: cross-dataset matrix and training-set size",
        description="cross-dataset: train on each detector preset of a mixed simulated dataset and test on "
                    "every preset (paper 001 Tables 4-6), plus train-on-the-others/test-on-the-held-out-one. "
                    "size: test accuracy against the number of training frames (Table 7). Prints the tables "
                    "and writes study.md/study.json under --out.",
        examples="  xtalscreen simulate --preset cspad,pilatus6m,eiger16m --n 6000 --out mix/\n"
                 "  xtalscreen study cross-dataset --data mix/ --epochs 30 --img-size 360 "
                 "--preprocess bin=4 --out studies/cross/\n"
                 "  xtalscreen study size --data mix/ --sizes 100,300,1000,3000 --out studies/size/")
    s.add_argument("kind", choices=["cross-dataset", "size"])
    s.add_argument("--data", required=True, help=_DATA_HELP)
    s.add_argument("--out", required=True)
    s.add_argument("--presets", help="comma-separated presets to use (cross-dataset; default all)")
    s.add_argument("--no-held-out", action="store_true", help="skip the train-on-the-others rows")
    s.add_argument("--sizes", default="100,300,1000", help="training-set sizes (size study)")
    s.add_argument("--model")
    s.add_argument("--model-arg", action="append", metavar="KEY=VALUE")
    s.add_argument("--target", default="ke", choices=["ke", "diffranet", "binary"])
    s.add_argument("--img-size", type=int)
    s.add_argument("--preprocess", action="append", metavar="KEY=VALUE")
    s.add_argument("--epochs", type=int, default=30)
    s.add_argument("--batches-per-epoch", type=int, default=100)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--lr", type=float, default=0.1)
    s.add_argument("--lr-end", type=float, default=1e-4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument("--workers", type=int, default=0)
    s.set_defaults(func=run_study, annotations=None)


def _model_name(args) -> str:
    """--model, else the --init checkpoint's model, else the target's default."""
    if getattr(args, "model", None):
        return args.model
    if getattr(args, "init", None):
        from xtalscreen.train.loop import _read_init

        return _read_init(args.init)["model_name"]
    return _DEFAULT_MODEL.get(args.target, "ke2018")


def _config(args, **extra):
    from xtalscreen.train.loop import TrainConfig

    bpe = getattr(args, "batches_per_epoch", 100)
    return TrainConfig(
        model=_model_name(args), model_kwargs=_kv(args.model_arg), img_size=args.img_size,
        preprocess=_kv(args.preprocess), target=args.target, epochs=args.epochs,
        batches_per_epoch=bpe or None, seed=args.seed, device=args.device, workers=args.workers, **extra)


def _load(args, target, val_fraction=None):
    from xtalscreen.train.datasets import load_labels

    data = load_labels(args.data, target=target, annotations=args.annotations,
                       val_fraction=val_fraction)
    for line in data.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    return data


def run_train(args) -> int:
    from xtalscreen.train.checkpoint import read_checkpoint
    from xtalscreen.train.loop import TrainConfig, train

    if args.resume:
        old = read_checkpoint(args.resume)
        cfg = TrainConfig.from_dict(old["config"]).replace(epochs=args.epochs, device=args.device,
                                                            workers=args.workers)
        if args.patience is not None:
            cfg = cfg.replace(patience=args.patience)
    else:
        cfg = _config(args, batch_size=args.batch_size, balanced=not args.no_balance,
                      optimizer=args.optimizer, lr=args.lr, lr_end=args.lr_end, schedule=args.schedule,
                      step_size=args.step_size, gamma=args.gamma, momentum=args.momentum,
                      weight_decay=args.weight_decay, augment=not args.no_augment, patience=args.patience,
                      init=args.init, val_fraction=args.val_fraction, bn_batches=args.bn_batches,
                      select=args.select, count_loss=args.count_loss, count_column=args.count_column,
                      windows=args.windows, windows_workers=args.windows_workers)
    data = _load(args, cfg.target, cfg.val_fraction)
    tr, va = data.split("train"), data.split("val")
    print(f"training {cfg.model} ({cfg.target}: {', '.join(data.classes)}) on {len(tr)} frames "
          f"{tr.class_counts()}, validating on {len(va)}", file=sys.stderr)
    res = train(cfg, tr, val=va if len(va) else None, out_dir=args.out, resume=args.resume,
                progress=False if args.no_progress else None, echo=print)
    for line in res.bad_items:
        print(f"skipped: {line}", file=sys.stderr)
    b = res.best
    print(f"done: {res.epochs_run} epochs in {res.seconds:.1f} s"
          f"{' (stopped early)' if res.stopped_early else ''}; best val accuracy "
          f"{b.get('val_accuracy', float('nan')):.4f}"
          + (f", keep AUC {b['val_keep_auc']:.4f}" if "val_keep_auc" in b else "")
          + f" at epoch {b.get('epoch', -1) + 1} (selected by {cfg.select}); "
          f"{len(res.bad_items)} unreadable frame(s)"
          + (f"; windows cut in {res.windows_seconds:.1f} s" if cfg.windows else "")
          + f"; model: {res.best_path}")
    return 0


def run_evaluate(args) -> int:
    from xtalscreen.evaluate.report import evaluate_model

    split = None if args.split in ("all", "") else args.split
    res = evaluate_model(args.model, args.data, out_dir=args.out, split=split, annotations=args.annotations,
                         min_tpr=args.min_tpr, saliency=args.saliency, embedding=args.embedding,
                         batch_size=args.batch_size, device=args.device, workers=args.workers,
                         progress=False if args.no_progress else None,
                         report=lambda s: print(s, file=sys.stderr), views=args.views)
    b = res["binary"]
    line = (f"{res['n']} frames: accuracy {100 * res['accuracy']:.2f} %; "
            f"{'+'.join(b['positive'])} vs rest: sensitivity {_pc(b['sensitivity'])}, "
            f"specificity {_pc(b['specificity'])}")
    if "roc" in res:
        line += f", AUC {res['roc']['auc']:.4f}"
    print(line + f"; {len(res['bad'])} unreadable; report in {args.out}")
    return 0


def run_train_head(args) -> int:
    from xtalscreen.models.pretrained import load_screening_model
    from xtalscreen.train import FrameDataset
    from xtalscreen.train.head import fit_head, save_head
    from xtalscreen.train.loop import resolve_device

    if args.c is not None and not (args.c > 0 and args.c < float("inf")):
        raise ParameterError(f"--c must be a positive number, got {args.c!r}")
    dev = resolve_device(args.device)
    model, pp, meta = load_screening_model(args.model)
    model.to(dev)
    data = _load(args, args.target)
    split = None if args.split in ("all", "") else args.split
    try:
        data = data.split(split)
    except ParameterError as exc:
        raise ParameterError(f"--split: {exc}, or all") from None
    if not len(data):
        raise ParameterError(f"--split {args.split}: no labelled frames in {args.data}; give another "
                             "--split (all: every frame)")
    print(f"fitting a {args.target} head ({', '.join(data.classes)}) on {meta['model_name']} features "
          f"of {len(data)} frames {data.class_counts()}, {args.views} view(s)", file=sys.stderr)
    new, info = fit_head(model, FrameDataset(data, pp), views=args.views, c=args.c,
                         batch_size=args.batch_size, device=dev, workers=args.workers,
                         progress=False if args.no_progress else None)
    for line in info["unreadable"]:
        print(f"skipped: {line}", file=sys.stderr)
    for c, v in info["cv"].items():
        print(f"  C {c:g}: cross-validated log-loss {v['log_loss']:.4f}, accuracy "
              f"{100 * v['accuracy']:.2f} %", file=sys.stderr)
    out = save_head(args.out, new.cpu(), pp, data, info, base=meta)
    print(f"wrote {out}: {meta['model_name']} with a {len(data.classes)}-class head (C {info['c']:g}, "
          f"training accuracy {100 * info['train_accuracy']:.2f} % on {info['n_train']} frames, "
          f"{args.views} view(s)); {len(info['unreadable'])} unreadable frame(s)")
    return 0


def _pc(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def run_tune(args) -> int:
    from xtalscreen.train.tune import tune

    base = _config(args)
    data = _load(args, base.target)
    study, table = tune(data.split("train"), data.split("val"), base=base, out_dir=args.out,
                        n_trials=args.trials, storage=args.storage, study_name=args.study_name,
                        seed=args.seed, echo=lambda s: print(s, file=sys.stderr))
    print(table)
    return 0


def run_study(args) -> int:
    from xtalscreen.evaluate.studies import cross_dataset, training_size

    cfg = _config(args, batch_size=args.batch_size, lr=args.lr, lr_end=args.lr_end)
    data = _load(args, cfg.target)
    echo = lambda line: print(line, file=sys.stderr)  # noqa: E731
    if args.kind == "cross-dataset":
        presets = [p for p in (args.presets or "").split(",") if p.strip()] or None
        res = cross_dataset(data, config=cfg, out_dir=args.out, presets=presets,
                            held_out=not args.no_held_out, echo=echo)
    else:
        try:
            sizes = [int(v) for v in args.sizes.split(",") if v.strip()]
        except ValueError:
            raise ParameterError(f"--sizes must be comma-separated integers, got {args.sizes!r}") from None
        res = training_size(data, config=cfg, out_dir=args.out, sizes=sizes, seed=args.seed, echo=echo)
    print(res["markdown"])
    return 0


def run_ensemble(args) -> int:
    from xtalscreen.models.ensemble import ensemble_checkpoints
    from xtalscreen.train import load_model

    out = ensemble_checkpoints(args.checkpoints, args.out)
    model = load_model(out)[0]
    print(f"wrote {out}: ensemble of {len(args.checkpoints)} "
          f"({', '.join(m.model_name for m in model.members)}), "
          f"{sum(p.numel() for p in model.parameters())} parameters")
    return 0
