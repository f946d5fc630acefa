"""``edgent train``, ``edgent info`` and ``edgent eval``: the model stage on the command line."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a multi-exit model (BranchyNet-style joint training)")
    p.add_argument("--model", default="alexnet-cifar10")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.08, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=None, help="train on the first N images only (smoke runs)")
    p.add_argument("--data", default=None, help="CIFAR-10 folder or .tar.xz (default: $EDGENT_DATA, ../shared)")
    p.add_argument("--out", default=None, help="output folder (default: runs/<model>)")
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

    p = sub.add_parser("info", help="describe a model's units, exits and partition points")
    p.add_argument("--model", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)

    p = sub.add_parser("eval", help="measure each exit's top-1 accuracy on the test split")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", default=None, help="weights file (default: the zoo's committed weights)")
    p.add_argument("--data", default=None)
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
    from edgent.train.trainer import TrainConfig, train

    cfg = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr_max=args.lr,
                      seed=args.seed, threads=args.threads, limit_train=args.limit_train, data=args.data,
                      cut_at_epoch=args.cut_at_epoch, anneal_epochs=args.anneal_epochs,
                      out_dir=args.out or f"runs/{args.model}")
    card = train(cfg, resume=args.resume)
    print(json.dumps({"model": card["model"], "exits": [{"exit": e["exit"], "top1": e["top1"]}
                                                          for e in card["exits"]], "out": cfg.out_dir}))
    return 0


def _train_bottleneck(args: argparse.Namespace) -> int:
    from edgent.train.bottleneck import BottleneckTrainConfig, train_bottleneck

    cfg = BottleneckTrainConfig(model=args.model, after_unit=args.bottleneck, channels=args.channels,
                                levels=args.levels, epochs=args.epochs, feature_epochs=args.feature_epochs, stride=args.stride, batch_size=args.batch_size,
                                seed=args.seed, threads=args.threads, limit_train=args.limit_train, data=args.data,
                                out=args.out or f"runs/bottleneck/{args.model}.bottleneck.safetensors")
    if args.lr != 0.08:  # the model's default; the bottleneck's own default otherwise
        cfg.lr = args.lr
    out = train_bottleneck(cfg)
    print(json.dumps({"model": cfg.model, "bottleneck": str(out), "after_unit": cfg.after_unit,
                      "channels": cfg.channels, "levels": cfg.levels}))
    return 0


def _info(args: argparse.Namespace) -> int:
    from edgent.model.describe import describe_model
    from edgent.model.zoo import load_model

    desc = describe_model(load_model(args.model, pretrained=False))
    if args.json:
        print(json.dumps(desc, indent=1))
        return 0
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
    for e in desc["exits"]:
        console.print(f"exit {e['exit']}: {e['units']} units, partition points 0..{e['units']}, "
                      f"{e['flops'] / 1e6:.1f} MFLOPs")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from edgent.data.cifar10 import load_split
    from edgent.model.zoo import load_model
    from edgent.train.evaluate import evaluate_exits

    model = load_model(args.model, weights=args.weights)
    split = load_split("test", args.data, download=args.download)
    top1 = evaluate_exits(model, split)
    result = {"model": model.name, "images": len(split),
              "exits": [{"exit": ep.exit, "units": ep.num_units, "top1": acc}
                        for ep, acc in zip(model.exit_points, top1)]}
    if args.codecs:
        result["codec_accuracy"] = _eval_codecs(args, model, split)
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
