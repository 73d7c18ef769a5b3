"""nmt: neural machine translation toolkit (LSTM, attention RNN, Transformer)."""

__version__ = "0.1.0"
