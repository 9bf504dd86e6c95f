"""End to end in one script: collect, embed, train, sample, plot (the demo, spelled out).

    python examples/06_end_to_end.py --minutes 5 --out outputs/example

Every stage reuses what an earlier run left (images, embeddings, checkpoints), so running it
again continues training. `make demo` runs the same pipeline with its defaults.
"""

import argparse
import logging
from pathlib import Path

import pokemon_diffusion as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/pokemon")
    parser.add_argument("--out", default="outputs/example")
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # 1-2. the packaged Pokédex and its captions' embeddings (offline)
    collected, embedded = pd.scrape_pokemon_images_and_embeddings(args.data, source="pokedex")
    print(collected.line(), "|", embedded)

    # 3. train at 32x32 for a time budget (continues the run when it exists)
    config = pd.RunConfig(train=pd.TrainConfig(steps=20_000, time_limit_minutes=args.minutes))
    run_dir = Path(args.out) / "run"
    result = pd.train(args.data, run_dir, config, resume=(run_dir / "checkpoints").is_dir())
    print(f"trained to step {result.step}, held-out loss {result.val_loss}")

    # 4-5. sample with DDIM + guidance and draw every denoising step
    run = pd.load_run(run_dir)
    sampled, labels = pd.generate(run, ["a fire-type dragon Pokémon", "Pikachu, an Electric-type Pokémon"],
                                 num=2, config=pd.SampleConfig(seed=0))
    pd.save_outputs(sampled, labels, f"{args.out}/samples.png", steps_figure=f"{args.out}/steps.png",
                    gif=f"{args.out}/denoising.gif")
    pd.save_figure(pd.plot_training_curves(run_dir), f"{args.out}/training_curve.png")


if __name__ == "__main__":
    main()
