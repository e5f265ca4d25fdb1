"""Which flags apply to the chosen run: a flag the user set that the run would not use is refused, never ignored.

One table says, for each flag that does not apply to every run, when it applies (a method's own
flags, its config's settings, apply when it is chosen; the table adds what else they need);
``common.cli.refuse_unused`` checks every flag the command line or the -config file set
(``args.given``) against it before anything is built or written. A value that is refused is never recorded in results.json as used.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from common import spec
from continual.memory import MEMORY_FLAGS
from continual.methods import METHODS
from continual.methods.heads import HEAD_METHODS

ER_FAMILY = ("er", "derpp", "er_ace")
REPLAY_PHASE = ("replay", "latent_replay")


def chosen_methods(args) -> list[str]:
    """The methods the flags choose, head included (``-head linear`` is the trained classifier, no method)."""
    names = ["baseline"] if args.baseline else args.method.split(",")
    if args.replay and not any(name in REPLAY_PHASE for name in names):
        names.append("replay")
    return names + ([args.head] if args.head != "linear" else [])


def _methods(*names: str) -> Callable:
    wanted = ", ".join(f"-method {name}" if name not in ("analytic", "ncm") else f"-head {name}" for name in names)

    def applies(args) -> str | None:
        return None if set(names) & set(chosen_methods(args)) else f"applies to {wanted} only"

    return applies


def _when(test: Callable, why: str) -> Callable:
    return lambda args: None if test(args) else why


_CONTINUAL = _when(lambda a: a.encoder_mode == "continual", "applies with -encoder_mode continual only")
_TASK_END = _when(
    lambda a: a.hlop_learning in ("task_end", "both") or (a.hlop_learning is None and a.encoder_mode == "continual"),
    "applies with -hlop_learning task_end or both only (the default with -encoder_mode continual)",
)

_FROZEN_ONLINE = _when(
    lambda a: a.encoder_mode == "frozen" and a.hlop_learning in (None, "online", "both"),
    "applies on frozen features with -hlop_learning online or both (the default there)",
)


def _own_flags() -> dict[str, Callable]:
    """A method's own flags (its config's settings, ``common.spec``) apply when a method that holds them is chosen."""
    owners: dict[str, list[str]] = {}
    for name, method in {**METHODS, **HEAD_METHODS}.items():
        for _, setting, _ in spec.settings(method.config_class) if method.config_class else ():
            if setting.dest not in MEMORY_FLAGS:
                owners.setdefault(setting.dest, []).append(name)
    return {dest: _methods(*names) for dest, names in owners.items()}


# flag (its dest) -> when it applies; a flag not named here applies to every run
APPLIES: dict[str, Callable] = {
    **_own_flags(),
    "memory_size": _when(
        lambda a: (
            any(n in REPLAY_PHASE for n in chosen_methods(a))
            or (any(n in ER_FAMILY for n in chosen_methods(a)) and a.memory_budget == 0)
        ),
        "applies to -method replay, latent_replay, er, derpp or er_ace, and not beside -memory_budget (a reservoir "
        "of that many rows replaces the per-class memory)",
    ),
    "memory_budget": _methods(*ER_FAMILY),
    "derpp_alpha": _methods("derpp"),
    "derpp_beta": _methods("derpp"),
    "replay_compress": _methods("latent_replay"),
    "gpm_encoder_threshold": lambda a: _methods("gpm")(a) or _CONTINUAL(a),
    **dict.fromkeys(
        ("hlop_spiking_scale", "hlop_spiking_timesteps", "hlop_spiking_projection"),
        lambda a: _methods("hlop")(a) or (None if a.hlop_spiking else "applies with -hlop_spiking only"),
    ),
    **dict.fromkeys(("hlop_passes", "hlop_threshold"), lambda a: _methods("hlop")(a) or _TASK_END(a)),
    "hlop_modality_paths": lambda a: _methods("hlop")(a) or _FROZEN_ONLINE(a),
    **dict.fromkeys(
        ("hlop_encoder_sizes", "hlop_encoder_lr", "hlop_encoder_iterations", "hlop_encoder_threshold"),
        lambda a: _methods("hlop")(a) or _CONTINUAL(a),
    ),
    **dict.fromkeys(("head_expansion", "head_ridge"), _methods("analytic")),
    "ncm_metric": _methods("ncm"),
    **dict.fromkeys(("encoder_lr", "image_grid"), _CONTINUAL),
    "encoder_type": _when(
        lambda a: a.encoder_mode == "continual" and str(a.pretrained or "none") == "none",
        "chooses the encoders that learn from random weights (-encoder_mode continual -pretrained none)",
    ),
    "encoder_momentum": _when(
        lambda a: a.encoder_mode == "continual" and "SGD" in (a.opt, a.later_opt),
        "applies with -encoder_mode continual and -opt SGD (or -later_opt SGD) only",
    ),
    **dict.fromkeys(
        ("step_size", "gamma"), _when(lambda a: a.lr_scheduler == "StepLR", "applies to -lr_scheduler StepLR only")
    ),
    **dict.fromkeys(
        ("T_max", "warmup"), _when(lambda a: a.lr_scheduler == "CosALR", "applies to -lr_scheduler CosALR only")
    ),
    "later_lr": _when(
        lambda a: a.later_lr != 0 or a.head != "linear",
        "0 trains nothing after task 0, so only a -head analytic or ncm can learn the later classes; "
        "with the trained classifier they would score 0",
    ),
    "seed": _when(lambda a: not a.seeds, "-seeds gives every run its seed; drop -seed"),
    "method": _when(lambda a: not a.baseline, "-baseline is -method baseline; give one of the two"),
    "test_noise": _when(lambda a: a.test_corrupt != "", "sets the noise of -test_corrupt's kinds; give -test_corrupt"),
    "Vth_bound": _when(lambda a: a.train_Vth == 1, "applies with -train_Vth 1 only (the thresholds do not learn)"),
}


# accepted and listed by --help-all, left out of --help: the reference's extra spellings and switches
# (-gpu-id beside -device, -baseline beside -method, -cnf, -rate_stat, its scheduler's details and backward
# passes) and plumbing
IN_HELP_ALL_ONLY = frozenset(
    ("gpu_id", "cnf", "rate_stat", "step_size", "gamma", "T_max", "warmup", "sign_symmetric", "feedback_alignment",
     "dsr_backward", "debug", "allow_outside_paths", "cache_dir", "compile", "deterministic", "order_seed",
     "checkpoint_every", "progress_every", "baseline")
)  # fmt: skip
HELP_EPILOG = (
    "A method's own flags appear with -method NAME --help (hlop, the default, included), a head's with -head NAME "
    "--help, the learning encoders' with -encoder_mode continual --help; --help-all lists every flag (the reference's "
    "-baseline, the same as -method baseline, included)."
)


def shown_in_help(args, dest: str) -> bool:
    """Whether ``--help`` lists ``dest`` for the run the other flags on the line choose: the flags that apply to it,
    a method's own flags only where ``-method`` names it (as mammoth adds a model's arguments)."""
    if dest in IN_HELP_ALL_ONLY:
        return False
    rule = APPLIES.get(dest)
    if rule is None or dest in ("method", "seed", "later_lr"):  # rules that refuse a value, not the flag
        return True
    view = copy.copy(args)
    if "method" not in args.given and not args.baseline:
        view.method = "baseline"
    return rule(view) is None
