"""`mspipe demo`: synthetic data -> pipeline -> server -> client -> canary -> web page.

The flow itself is mspipe/demo.py; this adapter only maps options onto DemoSettings.
"""
from __future__ import annotations

import argparse

from mspipe import options
from mspipe.demo import DemoSettings, run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = DemoSettings()
    parser.add_argument("--out", default=defaults.out,
                        help="working folder, recreated (default: %(default)s)")
    parser.add_argument("--studies", type=int, default=defaults.studies,
                        help="synthetic studies (default: %(default)s)")
    parser.add_argument("--slices", type=int, default=defaults.slices,
                        help="axial slices per study (default: %(default)s)")
    options.add_image_size(parser, defaults.image_size)
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="training epochs of the first model (default: %(default)s)")
    parser.add_argument("--no-web", action="store_true", help="skip the web page step")
    parser.add_argument("--keep-running", action="store_true",
                        help="keep server and web page up until Ctrl-C (default: only when "
                             "interactive)")


def run(args: argparse.Namespace) -> int:
    run_demo(DemoSettings(out=args.out, studies=args.studies, slices=args.slices,
                          image_size=args.image_size,
                          epochs=args.epochs, web=not args.no_web,
                          keep_running=args.keep_running))
    return 0
