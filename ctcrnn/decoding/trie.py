"""A character trie of a word list with a dense token-transition table, so that a beam search can follow
every beam's partial word through all candidate tokens with one gather: ``child[node, token]``.

Node 0 is the root (the empty word); the last node, ``oov``, absorbs every spelling that leaves the
trie. Tokens are walked character by character, so tokens of several characters (word pieces) land on
the same node as the same string spelled letter by letter. The table holds (nodes + 1) × V int64
entries: about 48 MB for a 200k-word vocabulary of characters (V = 29); that size is checked.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

__all__ = ["WordTrie"]

MAX_TABLE_ENTRIES = 200_000_000


class WordTrie:
    """``words`` (non-empty strings) as a trie; ``child`` (nodes + 1, V): the node reached from each node
    by each label (the tokens in ``skip_tokens``, e.g. blank and word delimiter, lead to ``oov``)."""

    def __init__(self, words: Iterable[str], labels: Sequence[str], skip_tokens: Iterable[int] = ()):
        children: list[dict[str, int]] = [{}]
        for word in words:
            node = 0
            for ch in word:
                if ch not in children[node]:
                    children[node][ch] = len(children)
                    children.append({})
                node = children[node][ch]
        self._children = children
        self.num_nodes = len(children) + 1
        self.oov = len(children)
        if self.num_nodes * len(labels) > MAX_TABLE_ENTRIES:
            raise ValueError(f"the word trie would need {self.num_nodes} nodes × {len(labels)} labels = "
                             f"{self.num_nodes * len(labels):,} entries (limit {MAX_TABLE_ENTRIES:,}): use a "
                             "smaller lexicon / LM vocabulary, or a token-level LM (lm_unit='token')")
        alphabet = sorted({ch for node in children for ch in node})
        column = {ch: i for i, ch in enumerate(alphabet)}
        by_char = torch.full((self.num_nodes, len(alphabet)), self.oov, dtype=torch.long)
        for node, edges in enumerate(children):
            for ch, target in edges.items():
                by_char[node, column[ch]] = target
        # Walk every node through every token's characters at once (vectorised over nodes).
        self.child = torch.full((self.num_nodes, len(labels)), self.oov, dtype=torch.long)
        nodes = torch.arange(self.num_nodes)
        skip = set(skip_tokens)
        for token, label in enumerate(labels):
            if token in skip:
                continue
            current = nodes
            for ch in label:
                current = by_char[current, column[ch]] if ch in column else torch.full_like(nodes, self.oov)
            self.child[:, token] = current

    def path(self, word: str) -> list[int]:
        """The nodes after each character of ``word``, one of the trie's words."""
        node, nodes = 0, []
        for ch in word:
            node = self._children[node][ch]
            nodes.append(node)
        return nodes

    def mark(self, words: Iterable[str], prefixes: bool = False) -> torch.Tensor:
        """(nodes + 1,) bool: True at the end node of each of ``words``, and with ``prefixes`` at every node
        on the way there, the root included."""
        marked = torch.zeros(self.num_nodes, dtype=torch.bool)
        for word in words:
            path = self.path(word)
            marked[path if prefixes else path[-1:]] = True
        if prefixes:
            marked[0] = True
        return marked
