"""Former home of the GRU/LSTM cells, kept so that ``from ctcrnn.cells import GRU, LSTM, GRUCell, LSTMCell``
in users' scripts keeps working; they live in :mod:`ctcrnn.nn.cells`."""
from .nn.cells import GRU, LSTM, GRUCell, LSTMCell, gru_step, lstm_step

__all__ = ["GRUCell", "LSTMCell", "GRU", "LSTM", "gru_step", "lstm_step"]
