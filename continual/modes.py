"""The encoder mode: one enum, the only form of the setting from the flags to the loop."""

from enum import Enum


class EncoderMode(str, Enum):
    """-encoder_mode: the encoders' features are computed once and frozen, or the encoders learn task after task
    with the spiking MLP (the leak-free protocol). A str, so ``mode == "frozen"`` and JSON read as the value."""

    FROZEN = "frozen"
    CONTINUAL = "continual"

    def __str__(self) -> str:
        return self.value


def mode_of(network) -> EncoderMode:
    """The mode a network was built for: it holds encoders that learn (``models.end_to_end.EndToEndNet``) or not."""
    return EncoderMode.CONTINUAL if getattr(network, "encoder", None) is not None else EncoderMode.FROZEN


ENCODER_MODES = tuple(mode.value for mode in EncoderMode)  # the flag's choices
