"""Render everything ``experiments/transcriber.yaml`` trains and validates on, in parallel.

The fit renders missing data itself, with ``render_workers`` processes; this script does it
up front with as many processes as asked, so that several fits of the config (e.g. two model
sizes side by side) find it ready:

    python experiments/prepare_transcriber_data.py --workers 15
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from mpe_ssl.data.augmented import AugmentedChorales
from mpe_ssl.data.drums import DrumConfig, render_drums
from mpe_ssl.data.render import RenderConfig, render_dataset

CONFIG = Path(__file__).with_name("transcriber.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    data = yaml.safe_load(Path(args.config).read_text())["data"]["init_args"]
    for stream in data["train_streams"]:
        settings = dict(stream["dataset"]["init_args"])
        settings.update(render_workers=args.workers, drums=None, items_per_epoch=1)
        print(AugmentedChorales(**settings), flush=True)
    render_drums(DrumConfig())
    counts = {"train": 0, "val": max(s.get("count") or 0 for s in data["val_streams"]), "test": None}
    root = render_dataset(RenderConfig(seed=data.get("seed", 0), counts=counts, workers=args.workers), progress=False)
    print(f"validation and test pieces: {root}", flush=True)


if __name__ == "__main__":
    main()
