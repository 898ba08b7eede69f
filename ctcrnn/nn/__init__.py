"""The network: GRU/LSTM cells written from their equations, the RNN encoder stack, the model contract
(frontend -> encoder -> CTC head), the CTC loss with its feasibility check and the padding masks every
frontend uses. The lowest layer: imports nothing else of ctcrnn but the registry."""
from .cells import GRU, LSTM, GRUCell, LSTMCell
from .ctc import CTCResult, ctc_loss, min_ctc_frames
from .encoder import EncoderConfig, RNNEncoder
from .masking import masked, valid_mask, zero_padding
from .model import BLANK, CTCModel, Frontend, conv_output_lengths

__all__ = ["GRU", "LSTM", "GRUCell", "LSTMCell", "CTCResult", "ctc_loss", "min_ctc_frames", "EncoderConfig",
           "RNNEncoder", "masked", "valid_mask", "zero_padding", "BLANK", "CTCModel", "Frontend",
           "conv_output_lengths"]
