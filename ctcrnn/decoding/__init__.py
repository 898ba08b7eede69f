"""Decoding: greedy and prefix beam search, offline or streaming (chunk by chunk) (with n-gram LM fusion, lexicon and hotwords), the n-gram LM
itself, forced alignment, external decoders behind the same interface, and the decoder factory.
Works on log-probabilities alone: imports nothing of the network, training or evaluation."""
from .alignment import Segment, align_batch, forced_align_segments, frame_labels_from_segments
from .decoders import BeamSearchDecoder, Hypothesis, WordSpan, greedy_decode, make_hypotheses, prefix_beam_search
from .factory import DECODERS, make_decoder
from .lm import NGramLM, build_ngram_lm, read_arpa, write_arpa
from .streaming import StreamHypothesis, StreamingDecoder

__all__ = ["Segment", "align_batch", "forced_align_segments", "frame_labels_from_segments", "BeamSearchDecoder",
           "Hypothesis", "WordSpan", "greedy_decode", "make_hypotheses", "prefix_beam_search", "DECODERS",
           "make_decoder", "NGramLM", "build_ngram_lm", "read_arpa", "write_arpa", "StreamHypothesis",
           "StreamingDecoder"]
