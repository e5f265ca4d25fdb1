"""What a class-incremental head that stores no rows reaches without any learned representation.

    python benchmarks/closed_form_reference.py [-data_dir DIR] [-split group] [-expansion 5000] [-seeds 0,1,2]

A reference point for the leak-free class scenario, not a spiking method: the raw inputs (grey pixels
and the standardised MFCC, each standardised with task 0's training rows only, so no statistic of a
later class is used) go through a fixed random ReLU expansion per modality (RanPAC's random
projection, without a pretrained backbone), and a recursive-least-squares head learns task after task
(after task ``k`` it equals the ridge fit on tasks ``0..k``'s training rows, which is what is computed
here; ``tests/test_er_heads.py`` holds the recursion to it). The ridge value is chosen among a few on
task 0's validation rows (the validation speaker, task 0's classes only). Nothing is trained by
gradient and nothing learned ever saw a later task, so the printed accuracy matrix is a leak-free
class-incremental result. The same is printed for randomly initialised (never trained) encoders of
this toolkit (``models.encoders``), as their features stand before any learning.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch
import torch.nn.functional as F

from common.cli import FlagParser, run_cli
from common.paths import CACHE_DIR, default_data_dir
from continual.metrics import average_forgetting, average_incremental_accuracy, format_matrix, format_summary
from dataloader.dataset import mfcc_statistics, prepare_data, standardize
from dataloader.options import DataSpec
from dataloader.splits import SplitConfig
from models.encoders import AudioEncoder, ImageEncoder

RIDGES = (1.0, 10.0, 100.0, 1000.0)


def expand(features: torch.Tensor, reference_rows, width: int, generator: torch.Generator) -> torch.Tensor:
    """Standardise with ``reference_rows``' statistics, then a fixed random ReLU expansion to ``width``."""
    mean, std = features[reference_rows].mean(0), features[reference_rows].std(0).clamp(min=1e-6)
    projection = torch.randn(features.shape[1], width, generator=generator, dtype=torch.float64)
    return F.relu((features - mean) / std @ (projection / features.shape[1] ** 0.5))


def ridge_weights(phi: torch.Tensor, labels: torch.Tensor, n_classes: int, ridge: float) -> torch.Tensor:
    gram = phi.t() @ phi + ridge * torch.eye(phi.shape[1], dtype=phi.dtype)
    return torch.linalg.solve(gram, phi.t() @ F.one_hot(labels, n_classes).double())


def class_incremental_matrix(phi, labels, data, ridge: float) -> list[list[float | None]]:
    """R[i][j]: test accuracy on task j of the ridge head fitted on tasks 0..i, answering over their classes."""
    tasks, n_classes = data.task_labels(), len(data.class_names)
    matrix = []
    for i in range(len(tasks)):
        seen = [c for task in tasks[: i + 1] for c in task]
        train = torch.from_numpy(data.rows("train", seen))
        weight = ridge_weights(phi[train], labels[train], n_classes, ridge)
        mask = torch.zeros(n_classes, dtype=torch.bool)
        mask[seen] = True
        row = []
        for j in range(len(tasks)):
            if j > i:
                row.append(None)
                continue
            test = torch.from_numpy(data.rows("test", tasks[j]))
            predicted = (phi[test] @ weight).masked_fill(~mask, float("-inf")).argmax(1)
            row.append((predicted == labels[test]).double().mean().item())
        matrix.append(row)
    return matrix


def chosen_ridge(phi, labels, data) -> float:
    """The ridge value with the best accuracy on task 0's validation rows, fitted on task 0's training rows."""
    first = data.task_labels()[0]
    train, val = torch.from_numpy(data.rows("train", first)), torch.from_numpy(data.rows("val", first))
    position = {label: i for i, label in enumerate(first)}
    truth = torch.tensor([position[int(label)] for label in labels[val]])
    scores = []
    for ridge in RIDGES:
        weight = ridge_weights(phi[train], labels[train], len(data.class_names), ridge)
        scores.append(((phi[val] @ weight)[:, first].argmax(1) == truth).double().mean().item())
    return RIDGES[int(np.argmax(scores))]


@torch.no_grad()
def feature_sets(data, width: int, seed: int) -> dict[str, torch.Tensor]:
    """Random expansions of the raw inputs and of randomly initialised encoders' embeddings."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.from_numpy(data.rows("train", data.task_labels()[0]))
    images = torch.from_numpy(np.asarray(data.images(32)))
    mean, std = mfcc_statistics(data.table.mfcc, first.numpy())
    mfcc = torch.from_numpy(standardize(data.table.mfcc, mean, std)).double()
    pixels = images.double().mean(-1).flatten(1) / 255.0
    raw = torch.cat([expand(pixels, first, width, generator), expand(mfcc, first, width, generator)], 1)
    torch.manual_seed(seed)
    image_encoder, audio_encoder = ImageEncoder(784).eval(), AudioEncoder(mfcc.shape[1], 784).eval()
    embedded = torch.cat([image_encoder(images[i : i + 500]) for i in range(0, len(images), 500)]).double()
    encoders = torch.cat([expand(embedded, first, width, generator),
                          expand(audio_encoder(mfcc.float()).double(), first, width, generator)], 1)  # fmt: skip
    return {"raw inputs": raw, "random encoders": encoders}


def main(argv=None) -> None:
    parser = FlagParser(description=__doc__.split("\n\n")[0])
    parser.flag("-data_dir", default=None, help="dataset directory (default: the embedded avdigits)")
    parser.flag("-cache_dir", default=str(CACHE_DIR), help="where decoded images are cached")
    parser.flag("-split", default="group", help="split mode (default group: held-out speaker)")
    parser.flag("-expansion", type=int, default=5000, help="random ReLU features per modality")
    parser.flag("-seeds", default="0,1,2", help="seeds of the random expansions and encoders")
    args = parser.parse_args(argv)
    spec = DataSpec(data_dir=Path(args.data_dir) if args.data_dir else default_data_dir(),
                    split=SplitConfig(mode=args.split), cache_dir=Path(args.cache_dir))  # fmt: skip
    data = prepare_data(spec)
    labels = torch.from_numpy(data.labels).long()
    summaries: dict[str, list] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for name, phi in feature_sets(data, args.expansion, seed).items():
            ridge = chosen_ridge(phi, labels, data)
            matrix = class_incremental_matrix(phi, labels, data, ridge)
            print(f"{name}, seed {seed}, ridge {ridge:g}:\n{format_matrix(matrix)}\n{format_summary(matrix)}")
            last = [v for v in matrix[-1] if v is not None]
            summaries.setdefault(name, []).append(
                (sum(last) / len(last), average_forgetting(matrix), average_incremental_accuracy(matrix))
            )
    for name, runs in summaries.items():
        values = np.array(runs) * 100
        mean, std = values.mean(0), values.std(0, ddof=1) if len(values) > 1 else np.zeros(3)
        print(f"{name}: ACC {mean[0]:.1f} ± {std[0]:.1f}  avg forgetting {mean[1]:.1f} ± {std[1]:.1f}  "
              f"avg incremental ACC {mean[2]:.1f} ± {std[2]:.1f}  (seeds {args.seeds})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_cli(main))
