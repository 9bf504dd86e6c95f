"""`pokemon-diffusion embed`: embed the dataset's captions with a text encoder."""

from __future__ import annotations

from ..cli_args import int_range

SPEC_HELP = ("auto (CLIP if cached, else the packaged MiniLM) | clip | minilm | a hub id (org/name) | "
             "a local model folder | an identity string such as minilm:all-MiniLM-L6-v2 (default: auto)")


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "embed", help="embed the dataset's captions (CLIP or the packaged MiniLM)",
        description="Embed every caption of a collected dataset: writes DIR/embeddings/<image stem>.npy, "
                    "fills embedding_path in DIR/pokemon_metadata.json and records the encoder in "
                    "DIR/embeddings.json. Entries already embedded by the same encoder are skipped.")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="dataset folder holding pokemon_metadata.json (from `collect`)")
    parser.add_argument("--text-encoder", default="auto", metavar="SPEC", help=SPEC_HELP)
    parser.add_argument("--batch-size", type=int_range(1, 4096), default=64, metavar="N",
                        help="captions per forward pass (default: 64)")
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="cpu | cuda | cuda:N (default: cuda when torch sees a GPU, else cpu)")
    parser.add_argument("--force", action="store_true",
                        help="re-embed every caption, also over embeddings made by another encoder")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from ..text.embeddings import embed_dataset

    embed_dataset(args.data, args.text_encoder, batch_size=args.batch_size, force=args.force,
                  device=args.device)
    return 0
