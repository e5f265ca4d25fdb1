"""Download the Kaggle scene dataset with kagglehub and place it at datasets/scene/.

``python datasets/download.py [-dest DIR] [-copy]`` fetches
``birdy654/scene-classification-images-and-audio`` into kagglehub's cache and links (or, with
``-copy``, copies) the folder that holds ``dataset.csv`` and ``images/`` to DIR. Without network
or Kaggle credentials it says what to do instead and exits with code 2.
"""

import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.cli import FlagParser, run_cli
from common.errors import UserError
from common.paths import SCENE_DIR, shown

KAGGLE_HANDLE = "birdy654/scene-classification-images-and-audio"


def download(dest: Path, copy: bool = False, handle: str = KAGGLE_HANDLE) -> Path:
    """Fetch ``handle`` with kagglehub and place its dataset folder at ``dest``; returns ``dest``."""
    dest = Path(dest)
    if (dest / "dataset.csv").is_file():
        print(f"{shown(dest)}: already holds dataset.csv; nothing to do (remove it to download again)")
        return dest
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UserError(f"-dest {shown(dest)}: exists and is not an empty folder; choose another -dest")
    manual = (
        f"download it by hand from https://www.kaggle.com/datasets/{handle} and unpack it so that "
        f"{shown(dest)}/dataset.csv and {shown(dest)}/images/ exist"
    )
    try:
        import kagglehub
    except ImportError:
        raise UserError(f"kagglehub is not installed (pip install kagglehub); or {manual}") from None
    print(f"downloading {handle} with kagglehub ...", flush=True)
    try:
        downloaded = Path(kagglehub.dataset_download(handle))
    except Exception as exc:  # noqa: BLE001 - kagglehub raises many types for network and credential failures
        reason = first_line(str(exc)) or type(exc).__name__
        raise UserError(
            f"could not download {handle} ({reason}); check the network and your Kaggle credentials "
            f"(~/.kaggle/kaggle.json or KAGGLE_USERNAME and KAGGLE_KEY), or {manual}"
        ) from None
    source = find_dataset_root(downloaded)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.rmdir()  # empty, checked above
    if copy:
        shutil.copytree(source, dest)
    else:
        try:
            dest.symlink_to(source.resolve(), target_is_directory=True)
        except OSError:  # no symlinks here (Windows without rights): copy instead
            shutil.copytree(source, dest)
    print(f"{shown(dest)}: {'copied' if copy else 'linked'} from {source}")
    return dest


def first_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, cut at a word boundary (marked ``...``) if over ``limit`` characters."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0] or line[:limit]
    return cut + " ..."


def find_dataset_root(downloaded: Path) -> Path:
    """The folder of the download that holds dataset.csv (the shallowest one)."""
    candidates = sorted(downloaded.rglob("dataset.csv"), key=lambda p: len(p.parts))
    if not candidates:
        raise UserError(f"{downloaded}: the download holds no dataset.csv; is {KAGGLE_HANDLE} the right dataset?")
    return candidates[0].parent


def main(argv) -> None:
    parser = FlagParser(prog="python datasets/download.py", description=__doc__.splitlines()[0])
    parser.flag("-dest", default=str(SCENE_DIR), help="where the dataset folder is placed")
    parser.flag("-copy", action="store_true", help="copy the files instead of linking to kagglehub's cache")
    args = parser.parse_args(argv)
    download(Path(args.dest), copy=args.copy)


if __name__ == "__main__":
    sys.exit(run_cli(main))
