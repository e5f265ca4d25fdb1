"""Composed methods give one result whatever order -method names them in, or the combination is refused."""

import itertools

import pytest

from common.errors import UserError
from continual.cli import build_parser, methods_from_args
from continual.config import ContinualConfig
from continual.methods import METHODS, compose
from models.neurons import NeuronConfig
from tests.fixtures import make_continual_data, run_small

TINY = ContinualConfig(epochs=1, batch_size=16, hidden=16, neuron=NeuronConfig(timesteps=2))
FLAGS = ["-hlop_out_num", "4,8,8", "-hlop_out_num_inc", "2,4,4", "-memory_size", "4"]
PAIRS = list(itertools.combinations(sorted(METHODS), 2))


def _methods(names: str):
    return methods_from_args(build_parser().parse_args(["-method", names, *FLAGS]))


@pytest.mark.parametrize(("first", "second"), PAIRS, ids=[f"{a},{b}" for a, b in PAIRS])
def test_a_pair_gives_the_same_matrix_in_either_order_or_is_refused_in_both(tmp_path, first, second):
    outcomes = []
    for order in (f"{first},{second}", f"{second},{first}"):
        try:
            method = compose(_methods(order))
        except UserError as refused:
            outcomes.append(("refused", str(refused).split(":", 1)[1]))
            continue
        data = make_continual_data(n_tasks=3, dim=20, per_class=(20, 5, 5))
        results = run_small(tmp_path / order, method, config=TINY, data=data)
        outcomes.append((results["method"], results["acc_matrix"]))
    assert outcomes[0] == outcomes[1]


def test_two_memories_are_refused_naming_both():
    with pytest.raises(UserError, match="er and er_ace both keep a memory of rows"):
        compose(_methods("er,er_ace"))
