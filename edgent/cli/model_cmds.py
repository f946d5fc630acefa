"""``edgent train``, ``edgent info`` and ``edgent eval``: the model stage on the command line."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a multi-exit model: its exits (trunk frozen) or jointly (BranchyNet)",
                       description="Train a model (zoo name or model folder) on an image folder (ROOT/CLASS/*.jpg, "
                                   "optionally ROOT/train and ROOT/test) or CIFAR-10. --exits-only trains the exit "
                                   "branches with the trunk frozen (a trained model gets exits); --joint trains all "
                                   "exits together (BranchyNet). alexnet-cifar10 without either runs the paper "
                                   "model's recipe. Writes weights.safetensors, card.json and model.json to --out "
                                   "(default: the model folder itself).")
    p.add_argument("--model", default="alexnet-cifar10", help="zoo name or model folder (default alexnet-cifar10)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--exits-only", action="store_true", help="train only the exits, trunk frozen (default for "
                     "models other than alexnet-cifar10)")
    how.add_argument("--joint", action="store_true", help="train trunk and exits jointly (BranchyNet loss)")
    p.add_argument("--test-share", type=float, default=0.2,
                   help="share of each class held out for testing when --data has no test/ folder")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: 16 for alexnet-cifar10's recipe, 5 "
                   "otherwise)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 128 alexnet recipe, 64 otherwise)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 0.08 alexnet recipe; 3e-3 "
                   "AdamW --exits-only; 0.05 SGD --joint)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N images only (smoke runs)")
    p.add_argument("--data", default=None, help="image folder, or CIFAR-10 (cifar10, a CIFAR-10 folder or .tar.xz; "
                   "default: CIFAR-10 from $EDGENT_DATA, ../shared)")
    p.add_argument("--out", default=None, help="output folder (default: the model folder; runs/<model> for a zoo "
                   "model)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--cut-at-epoch", type=int, default=None,
                   help="stop following the one-cycle schedule after this epoch, then anneal (see --anneal-epochs)")
    p.add_argument("--anneal-epochs", type=int, default=0,
                   help="epochs after --cut-at-epoch over which the learning rate falls linearly to zero")
    p.add_argument("--bottleneck", metavar="AFTER_UNIT", default=None,
                   help="instead of the model, train a learned bottleneck after this trunk unit (name or index; "
                        "trunk frozen, distilled from the model's outputs); --out is then the .safetensors file")
    p.add_argument("--channels", type=int, default=16, help="with --bottleneck: channels of the code")
    p.add_argument("--levels", type=int, default=8, help="with --bottleneck: integer levels per symbol")
    p.add_argument("--stride", type=int, default=2, choices=(1, 2),
                   help="with --bottleneck: the encoder's stride (2 halves the code's height and width)")
    p.add_argument("--feature-epochs", type=int, default=0,
                   help="with --bottleneck: epochs of reconstruction-only training before the --epochs of "
                        "distillation")
    p.set_defaults(func=_train)

    p = sub.add_parser("convert", help="turn a PyTorch model (torchvision:NAME, module:function, file.py:function) "
                       "into a model folder with exits",
                       description="Trace the model with torch.fx, cut it where exactly one tensor is live, attach "
                                   "exit branches and write a model folder (model.json + weights.safetensors) that "
                                   "every --model option accepts. See docs/own-model.md.")
    p.add_argument("--arch", required=True, help="torchvision:NAME, package.module:function or file.py:function")
    p.add_argument("--num-classes", type=int, required=True, help="outputs of every exit")
    p.add_argument("--out", required=True, help="the model folder to write")
    p.add_argument("--input-size", default="3,224,224", help="input C,H,W (default 3,224,224; N means 3,N,N)")
    p.add_argument("--exits", default=None,
                   help="auto (default: 3 exits spread by FLOPs), auto:N, none, UNIT[:HEAD],... (names as listed), "
                        "or a JSON list of {after, head}")
    p.add_argument("--head", default="linear", choices=("linear", "conv"), help="exit head (default linear)")
    p.add_argument("--name", default=None, help="model name (default: from --arch and the input size)")
    p.add_argument("--preprocess", default="imagenet",
                   help="input preprocessing: imagenet (default), cifar10 or scale01; for your own mean/std edit "
                        "model.json")
    p.add_argument("--init-weights", default=None,
                   help="the model's trained state dict (.safetensors) to start from (e.g. your trained model)")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(func=_convert)

    p = sub.add_parser("info", help="describe a model's units, exits and partition points")
    p.add_argument("--model", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)

    p = sub.add_parser("eval", help="measure each exit's top-1 accuracy on the test split")
    p.add_argument("--model", required=True, help="zoo name or model folder")
    p.add_argument("--weights", default=None, help="weights file (default: the model's own)")
    p.add_argument("--data", default=None, help="image folder (its test/ or val/ split, else the held-out share) or "
                   "CIFAR-10 (default)")
    p.add_argument("--test-share", type=float, default=0.2, help="held-out share per class without a test/ folder")
    p.add_argument("--write-card", action="store_true", help="write the measured accuracies into the model "
                   "folder's card.json")
    p.add_argument("--download", action="store_true", help="fetch CIFAR-10 with torchvision if not found")
    p.add_argument("--json", action="store_true")
    p.add_argument("--codecs", default=None,
                   help="also measure each exit's top-1 through these codecs (comma-separated, e.g. "
                        "uint8,jpeg50,int8,bneck-alexnet-cifar10; edgent.train.codec_eval says how)")
    p.add_argument("--limit", type=int, default=None, help="with --codecs: N seeded test images only")
    p.add_argument("--bottleneck-file", default=None,
                   help="with --codecs: use this bottleneck file for bneck-<model> instead of the package's")
    p.add_argument("--update-card", default=None, metavar="CARD",
                   help="with --codecs: write the measured values into this model card's codec_accuracy")
    p.set_defaults(func=_eval)


def _train(args: argparse.Namespace) -> int:
    if args.bottleneck is not None:
        return _train_bottleneck(args)
    if args.exits_only or args.joint or args.model != "alexnet-cifar10":
        return _train_chain(args)
    from edgent.train.trainer import TrainConfig, train

    cfg = TrainConfig(model=args.model, epochs=args.epochs or 16, batch_size=args.batch_size or 128,
                      lr_max=args.lr if args.lr is not None else 0.08,
                      seed=args.seed, threads=args.threads, limit_train=args.limit_train, data=args.data,
                      cut_at_epoch=args.cut_at_epoch, anneal_epochs=args.anneal_epochs,
                      out_dir=args.out or f"runs/{args.model}")
    card = train(cfg, resume=args.resume)
    print(json.dumps({"model": card["model"], "exits": [{"exit": e["exit"], "top1": e["top1"]}
                                                          for e in card["exits"]], "out": cfg.out_dir}))
    return 0


def _train_bottleneck(args: argparse.Namespace) -> int:
    from edgent.train.bottleneck import BottleneckTrainConfig, train_bottleneck

    given = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr))
             if v is not None}  # the rest: the bottleneck's own defaults
    cfg = BottleneckTrainConfig(model=args.model, after_unit=args.bottleneck, channels=args.channels,
                                levels=args.levels, feature_epochs=args.feature_epochs, stride=args.stride,
                                seed=args.seed, threads=args.threads, limit_train=args.limit_train, data=args.data,
                                out=args.out or f"runs/bottleneck/{args.model}.bottleneck.safetensors", **given)
    out = train_bottleneck(cfg)
    print(json.dumps({"model": cfg.model, "bottleneck": str(out), "after_unit": cfg.after_unit,
                      "channels": cfg.channels, "levels": cfg.levels}))
    return 0


def _train_chain(args: argparse.Namespace) -> int:
    from edgent.errors import ConfigError
    from edgent.model.zoo import WEIGHTS_DIR, load_model, load_model_spec
    from edgent.train.chain_trainer import ChainTrainConfig, train_chain

    if args.cut_at_epoch is not None or args.anneal_epochs:
        raise ConfigError("--cut-at-epoch/--anneal-epochs belong to alexnet-cifar10's recipe; drop them with "
                          "--exits-only/--joint")
    spec = load_model_spec(args.model)
    out = args.out or (str(spec.folder) if spec.folder is not None and spec.folder != WEIGHTS_DIR
                       else f"runs/{spec.name}")
    start = spec.weights if spec.weights is not None and spec.weights.is_file() else None
    if start is None and args.exits_only:
        print(f"edgent train: {spec.name} has no weights to start from: its trunk is random, and --exits-only "
              "keeps it so", file=sys.stderr)
    chain = load_model(spec, pretrained=start is not None)
    cfg = ChainTrainConfig(model=spec.name, data=args.data, mode="joint" if args.joint else "exits-only",
                           epochs=args.epochs or 5, batch_size=args.batch_size or 64, lr=args.lr, seed=args.seed,
                           threads=args.threads, limit_train=args.limit_train, test_share=args.test_share,
                           out_dir=out)
    card = train_chain(cfg, spec, chain, resume=args.resume)
    print(json.dumps({"model": card["model"], "mode": cfg.mode, "exits": [{"exit": e["exit"], "top1": e["top1"]}
                                                                           for e in card["exits"]], "out": out}))
    return 0


def _info(args: argparse.Namespace) -> int:
    from edgent.model.describe import describe_model
    from edgent.model.zoo import load_model

    desc = describe_model(load_model(args.model, pretrained=False))
    if args.json:
        print(json.dumps(desc, indent=1))
        return 0
    print_description(desc)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgent.model.convert import ConvertOptions, convert, parse_input_shape
    from edgent.model.describe import describe_model

    opts = ConvertOptions(arch=args.arch, num_classes=args.num_classes, out=Path(args.out),
                          input_shape=parse_input_shape(args.input_size), exits=args.exits, name=args.name,
                          head=args.head, preprocess=args.preprocess,
                          init_weights=Path(args.init_weights) if args.init_weights else None)
    spec, chain = convert(opts)
    desc = describe_model(chain)
    if args.json:
        print(json.dumps({"folder": str(opts.out), "model": spec.to_json(), "description": desc}, indent=1))
        return 0
    print_description(desc)
    print(f"wrote {opts.out}/model.json and {opts.out}/weights.safetensors ({spec.name}); next: "
          f"edgent train --model {opts.out} --data IMAGEFOLDER --exits-only")
    return 0


def print_description(desc: dict) -> None:
    """Units (with their cost and the tensor each cut sends), then exits with their cost, as rich tables."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{desc['model']}: input {desc['input_shape']}, {desc['params']:,} parameters")
    for col in ("#", "unit", "kind", "output shape", "output bytes", "params", "MFLOPs"):
        table.add_column(col, justify="right" if col not in ("unit", "kind") else "left")
    for u in desc["trunk"] + desc["branches"]:
        table.add_row(str(u["index"]), u["name"], u["kind"], "x".join(map(str, u["output_shape"])),
                      f"{u['output_bytes']:,}", f"{u['params']:,}", f"{u['flops'] / 1e6:.2f}")
    console = Console()
    console.print(table)
    exits = Table(title="exits (cut points: a partition point p sends the output of unit p-1; 0 sends the input)")
    for col in ("exit", "after trunk unit", "units", "cut points", "MFLOPs", "params", "smallest cut bytes"):
        exits.add_column(col, justify="right")
    names = [u["name"] for u in desc["trunk"]]
    for e in desc["exits"]:
        after = e["after_trunk_units"]
        inner = e["tensor_bytes_float32"][1:-1] or [0]
        exits.add_row(str(e["exit"]), f"{after} ({names[after - 1]})", str(e["units"]), f"0..{e['units']}",
                      f"{e['flops'] / 1e6:.2f}", f"{e['params']:,}", f"{min(inner):,}")
    console.print(exits)


def _eval(args: argparse.Namespace) -> int:
    from edgent.data.imagefolder import load_labelled
    from edgent.model.card import build_card, write_card
    from edgent.model.zoo import load_model, load_model_spec
    from edgent.train.chain_trainer import check_data_fits, evaluate_chain

    spec = load_model_spec(args.model)
    model = load_model(spec, weights=args.weights)
    if args.download:
        from edgent.data.cifar10 import locate

        locate(args.data, download=True)
    data = load_labelled(args.data, "test", model.input_shape, args.test_share)
    trained_on = None
    if spec.card is not None and spec.card.is_file():
        trained_on = json.loads(spec.card.read_text()).get("classes")
    check_data_fits(model, data, f"--data {args.data or 'cifar10'}", tuple(trained_on) if trained_on else None)
    top1 = evaluate_chain(model, data, spec.preprocess_name)
    if args.write_card:
        from edgent.errors import ConfigError
        from edgent.model.zoo import WEIGHTS_DIR

        if spec.folder is None or spec.folder == WEIGHTS_DIR or spec.card is None:
            raise ConfigError("--write-card writes into a model folder; the zoo's cards are written by edgent train")
        old = json.loads(spec.card.read_text()) if spec.card.is_file() else {}
        keep = {k: v for k, v in old.items() if k in ("training", "reproduce", "weights")}
        write_card(build_card(model, top1, {**keep, "classes": list(data.classes),
                                            "input_shape": list(model.input_shape),
                                            "dataset": {"name": str(args.data or "cifar10"), "test": data.source,
                                                        "test_images": len(data), "classes": list(data.classes)}}),
                   spec.card)
    result = {"model": model.name, "images": len(data), "data": data.source,
              "exits": [{"exit": ep.exit, "units": ep.num_units, "top1": acc}
                        for ep, acc in zip(model.exit_points, top1)]}
    if args.codecs:
        result["codec_accuracy"] = _eval_codecs(args, model, data)
    if args.json:
        print(json.dumps(result))
    else:
        for e in result["exits"]:
            print(f"exit {e['exit']} ({e['units']} units): top-1 {e['top1']:.4f}")
        for name, entry in result.get("codec_accuracy", {}).items():
            print(f"{name} ({entry['images']} images): " + ", ".join(f"{a:.4f}" for a in entry["top1"]))
    return 0


def _eval_codecs(args: argparse.Namespace, model, split) -> dict:
    from edgent.codec import BottleneckCodec, register_codec
    from edgent.model.bottleneck import load_bottleneck
    from edgent.train.codec_eval import evaluate_codecs

    if args.bottleneck_file:
        register_codec(BottleneckCodec(load_bottleneck(args.bottleneck_file)))
    names = [c.strip() for c in args.codecs.split(",") if c.strip()]
    measured = evaluate_codecs(model, split, names, limit=args.limit)
    if args.update_card:
        from pathlib import Path

        from edgent.jsonio import write_json_file

        card = json.loads(Path(args.update_card).read_text())
        card.setdefault("codec_accuracy", {}).update(measured)
        write_json_file(args.update_card, card)
    return measured
