"""Subcommand ``hiclust shard`` (registered through ``hiclust.cli.EXTENSIONS``): writes a dataset
as WebDataset-style ``.tar`` shards with :func:`hiclust.data.shards.write_shards`.

    hiclust shard folder:PHOTOS --image-size 96 --out /data/photos-shards
    hiclust train --dataset shards:/data/photos-shards --out runs/photos
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def _cmd_shard(args: argparse.Namespace) -> int:
    # Every flag is checked before the dataset is loaded or anything is written.
    if args.shard_size < 1:
        raise ValueError(f"--shard-size must be at least 1 image per shard, got {args.shard_size}")
    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"--image-size must be a positive number of pixels, got {args.image_size}")
    if args.quality is not None and args.format != "jpg":
        raise ValueError("--quality applies to --format jpg only (PNG is lossless)")
    quality = 95 if args.quality is None else args.quality
    if not 1 <= quality <= 100:
        raise ValueError(f"--quality must be from 1 to 100, got {quality}")
    from hiclust.data.shards import check_out_dir

    out = check_out_dir(args.out)

    from hiclust.data import ImageDataset, load_dataset
    from hiclust.data.shards import write_shards

    data = load_dataset(args.dataset, root=args.root, split=args.split, image_size=args.image_size)
    if not isinstance(data, ImageDataset):
        raise ValueError(f"{args.dataset} holds feature vectors, not images; shards hold images (train on the "
                         "feature file itself)")
    done = write_shards(data, out, shard_size=args.shard_size, image_format=args.format, quality=quality,
                        progress=sys.stderr.isatty())
    c, h, w = data.image_shape
    print(f"wrote {done['images']:,} images ({c}x{h}x{w}) in {done['shards']:,} shard(s), "
          f"{done['bytes'] / 1e6:,.1f} MB, to {done['out_dir']} in {done['seconds']:.1f} s")
    return 0


def register(subparsers: Any) -> None:
    """Adds ``shard`` to the ``hiclust`` command."""
    from hiclust.cli import add_streaming_flags

    p = subparsers.add_parser(
        "shard", help="write a dataset as WebDataset .tar shards (for very large collections)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write the images of DATASET, decoded and resized as training would see them, into\n"
                    "DIR/shard-000000.tar, ... (WebDataset layout: KEY.png or KEY.jpg, KEY.cls with the label,\n"
                    "KEY.id.txt with the item id, e.g. the file's path in the folder), plus DIR/index.npz (where\n"
                    "each image lies, for random access) and DIR/dataset.json. PNG is lossless: training on\n"
                    "the shards sees exactly the pixels of the original.\n\n"
                    "example: hiclust shard folder:photos --image-size 96 --out photos-shards\n"
                    "         hiclust train --dataset shards:photos-shards --out runs/photos",
    )
    p.add_argument("dataset", metavar="DATASET",
                   help="what --dataset of 'hiclust train' takes: folder:PATH, npy:PATH, digits, cifar10, ...")
    p.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) directory for the shards")
    p.add_argument("--image-size", type=int, default=None, metavar="S",
                   help="resize every image to S x S before writing (image folders of mixed sizes)")
    p.add_argument("--shard-size", type=int, default=10000, metavar="N", help="images per shard (default 10000)")
    p.add_argument("--format", choices=("png", "jpg"), default="png",
                   help="png (default: lossless, identical pixels) or jpg (smaller, slightly changed pixels)")
    p.add_argument("--quality", type=int, default=None, metavar="Q", help="JPEG quality 1-100 (default 95)")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="directory holding the dataset files (registered datasets such as cifar10)")
    p.add_argument("--split", default="all", help="train, test or all (default all, as 'hiclust train')")
    # A folder over the memory budget is read a batch at a time while it is written (main applies these).
    add_streaming_flags(p)
    p.set_defaults(func=_cmd_shard)
