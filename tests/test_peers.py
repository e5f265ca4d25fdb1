"""benchmarks/peers.py: the peers compute the same network's forward spikes, and the command writes its table."""

import importlib.util
import os
from pathlib import Path

import pytest

from benchmarks.peers import Shape, forward_spikes, main
from models.neurons import NeuronConfig

TINY = Shape(batch=8, hidden=64, timesteps=6)
# alpha 1: the peers subtract their firing threshold on a spike, which is mmhlop's rule (subtract Vth, fire at
# alpha Vth) with alpha 1 only; Vth 0.05 makes both hidden layers spike on the shared batch
SAME_RULE = NeuronConfig(timesteps=TINY.timesteps, vth=0.05, alpha=1.0)
PEERS = [name for name in ("spikingjelly", "snntorch") if importlib.util.find_spec(name)]


@pytest.mark.parametrize("kind", PEERS)
def test_a_peer_fires_exactly_where_mmhlop_fires(kind):
    ours, theirs = forward_spikes("mmhlop", TINY, SAME_RULE), forward_spikes(kind, TINY, SAME_RULE)
    assert all(layer.any() for layer in ours)  # both layers spike: the comparison is not of silence
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.shape == other.shape and bool((mine == other).all())


@pytest.mark.skipif(not os.environ.get("MMHLOP_OFFICIAL"), reason="set MMHLOP_OFFICIAL to a clone of pkuxmq/HLOP-SNN")
def test_the_official_code_fires_exactly_where_mmhlop_fires_at_the_reference_constants():
    official = Path(os.environ["MMHLOP_OFFICIAL"])
    reference = NeuronConfig(timesteps=TINY.timesteps)  # Vth 0.3, alpha 0.3: the rule both share
    for mine, other in zip(
        forward_spikes("mmhlop", TINY, reference), forward_spikes("official", TINY, reference, official), strict=True
    ):
        assert bool((mine == other).all())


def test_the_command_times_the_contenders_present_and_writes_its_table(tmp_path, capsys):
    docs = tmp_path / "scale.md"
    docs.write_text("before\n<!-- peers table: benchmarks/peers.py -->\nold\n<!-- end of peers table -->\nafter\n")
    main(["-rounds", "2", "-steps", "1", "-batch", "4", "-hidden", "64", "-timesteps", "4", "-docs", str(docs),
          "-json", str(tmp_path / "peers.json"), "-encoders"])  # fmt: skip
    printed = capsys.readouterr().out
    text = docs.read_text()
    assert "old" not in text and text.startswith("before\n") and text.endswith("after\n")
    assert "| mmhlop baseline |" in text and "| mmhlop HLOP |" in text
    for kind, row in (("spikingjelly", "| SpikingJelly LIF MLP, BPTT |"), ("snntorch", "| snnTorch Leaky MLP, BPTT |")):
        assert (row in text) == (kind in PEERS) and (f"({kind} is not installed" in printed) == (kind not in PEERS)
    assert "official HLOP-SNN: skipped (no -official DIR)" in printed
    assert "| mmhlop spiking image encoder, DSR |" in text and "| mmhlop spiking image encoder, BPTT |" in text
    assert ("| SpikingJelly conv LIF encoder, BPTT |" in text) == ("spikingjelly" in PEERS)
