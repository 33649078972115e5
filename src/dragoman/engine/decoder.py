"""llama.cpp's batch API for several sequences at once, greedy, with shared prompt prefixes.

One llama.cpp context holds `parallel` generation sequences (ids 0..parallel-1) and a few
prefix sequences (ids from `parallel` on). The key/value cache is unified: copying a prefix
sequence into a generation sequence only tags the prefix's cells with one more sequence id, so
a few-shot prefix is evaluated once and shared by every request of its language pair.

Only the prefixes that running sequences use stay in the cache. Attention spans every cell up
to the highest one in use, masked or not, so idle prefixes would make every request dearer
(four language pairs' prefixes: a tenth more time for a one-sentence prompt, a twentieth for
each next token).
An idle prefix's cells are saved on the host when it is first evaluated (a few MB) and put
back in a millisecond when a request needs it again, the same values as evaluated.

Everything here runs in one thread, the engine's event loop thread (see `scheduler.py`).
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from dragoman.engine.llama_log import silence_llama_log
from dragoman.engine.vocabulary import GROUPS_KEY, read_groups

# Prefixes kept on the host for when they come back (each a few MB: 18 KB a token here).
SAVED_PREFIXES = 16


def _greedy(logits: Any, rows: tuple[tuple[int, int], ...] | None) -> int:
    if rows is None:
        return int(logits.argmax())
    best, score = -1, -np.inf
    for start, stop in rows:
        i = start + int(logits[start:stop].argmax())
        if logits[i] > score:
            best, score = i, logits[i]
    return best


class DecodeError(Exception):
    """llama.cpp could not decode a batch."""


@dataclass(slots=True)
class Entry:
    """One token of a batch: which sequence, where, and whether its logits are wanted."""

    seq: int
    token: int
    pos: int
    logits: bool
    # Added to these tokens' logits before the greedy choice (glossary terms, `terms.py`).
    bias: dict[int, float] | None = None
    # The token id ranges [start, stop) the choice is made in (the target language's
    # scripts, `vocabulary.py`); None: the whole vocabulary.
    rows: tuple[tuple[int, int], ...] | None = None
    # A token that may not be chosen (the start of a loop decoded again, `repetition.py`).
    ban: int | None = None


class Decoder:
    def __init__(
        self,
        model_path: str,
        *,
        threads: int,
        parallel: int,
        n_ctx: int,
        n_batch: int = 1024,
        prefix_slots: int = 4,
    ) -> None:
        import llama_cpp as ll

        self._ll = ll
        silence_llama_log()
        ll.llama_backend_init()
        model_params = ll.llama_model_default_params()
        self.model = ll.llama_model_load_from_file(model_path.encode(), model_params)
        if not self.model:
            raise DecodeError(f"cannot load the model file {model_path}")
        self.vocab = ll.llama_model_get_vocab(self.model)
        self.n_vocab = int(ll.llama_vocab_n_tokens(self.vocab))
        self.parallel = parallel
        self.n_batch = n_batch
        self.n_ctx = n_ctx
        params = ll.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = min(512, n_batch)
        params.n_seq_max = parallel + prefix_slots
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = True  # prefix cells shared between sequences, not copied
        params.swa_full = True  # sliding-window layers keep every cell a shared prefix needs
        params.no_perf = True
        # As llama-cpp-python's `Llama` runs it: flash attention computes the same attention
        # with other rounding, enough to change greedy translations of this small model.
        params.flash_attn_type = ll.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.ctx = ll.llama_init_from_model(self.model, params)
        if not self.ctx:
            ll.llama_model_free(self.model)
            raise DecodeError("cannot create a llama.cpp context")
        self.mem = ll.llama_get_memory(self.ctx)
        self._batch = ll.llama_batch_init(n_batch, 0, 1)
        # Prefixes in the cache: text -> (sequence id, length in tokens), least recently used
        # first.
        self._prefixes: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._free_prefix_ids = list(range(parallel, parallel + prefix_slots))
        # Every prefix evaluated, as llama.cpp's state of its sequence: text -> (state, length).
        self._saved: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        # Generation sequence -> the prefix it started from.
        self._seq_prefix: dict[int, str] = {}
        self.prefixes_evaluated = 0  # not counting those put back from their saved state
        self._piece_buf = ctypes.create_string_buffer(256)
        self.bos = int(ll.llama_vocab_bos(self.vocab))
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        # A model file with its vocabulary in script groups (`vocabulary.py`), or None.
        self.groups = read_groups(self.metadata(GROUPS_KEY))

    # Text and tokens

    def tokenize(self, text: str, *, bos: bool, special: bool = False) -> list[int]:
        """`special`: parse special-token text such as `<start_of_turn>` (chat templates)."""
        data = text.encode()
        size = len(data) + 8
        while True:
            buf = (self._ll.llama_token * size)()
            n = self._ll.llama_tokenize(self.vocab, data, len(data), buf, size, bos, special)
            if n >= 0:
                return list(buf[:n])
            size = -n

    def piece(self, token: int) -> bytes:
        n = self._ll.llama_token_to_piece(self.vocab, token, self._piece_buf, 256, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._ll.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
            return buf.raw[:n]
        return self._piece_buf.raw[:n]

    def is_end(self, token: int) -> bool:
        return bool(self._ll.llama_vocab_is_eog(self.vocab, token))

    def metadata(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(65536)
        n = self._ll.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def token_text(self, token: int) -> str:
        raw = self._ll.llama_vocab_get_text(self.vocab, token)
        return raw.decode("utf-8", "replace") if raw else ""

    # Sequences

    def clear(self, seq: int) -> None:
        self._ll.llama_memory_seq_rm(self.mem, seq, -1, -1)
        self._seq_prefix.pop(seq, None)

    def start_with_prefix(self, seq: int, prefix: str) -> int:
        """Empty `seq`, then share the evaluated `prefix` with it. Returns the prefix length."""
        self.clear(seq)
        self._evict_idle_prefixes(keep=prefix)
        if not prefix:
            return 0
        prefix_seq, length = self._prefix(prefix)
        self._ll.llama_memory_seq_cp(self.mem, prefix_seq, seq, 0, length)
        self._seq_prefix[seq] = prefix
        return length

    def prefix_length(self, prefix: str) -> int | None:
        """Tokens of `prefix` when it is in the cache, else None."""
        found = self._prefixes.get(prefix)
        return found[1] if found is not None else None

    def prefix_cells(self) -> int:
        return sum(length for _, length in self._prefixes.values())

    def resident_prefixes(self) -> list[str]:
        return list(self._prefixes)

    def _evict_idle_prefixes(self, keep: str) -> None:
        """Take out of the cache every prefix that no sequence uses, except `keep`."""
        used = set(self._seq_prefix.values())
        for text in [t for t in self._prefixes if t != keep and t not in used]:
            prefix_seq, _ = self._prefixes.pop(text)
            self.clear(prefix_seq)
            self._free_prefix_ids.append(prefix_seq)

    def _prefix(self, prefix: str) -> tuple[int, int]:
        found = self._prefixes.get(prefix)
        if found is not None:
            self._prefixes.move_to_end(prefix)
            return found
        if self._free_prefix_ids:
            prefix_seq = self._free_prefix_ids.pop()
        else:
            _, (prefix_seq, _) = self._prefixes.popitem(last=False)
            self.clear(prefix_seq)  # cells still shared by running sequences stay theirs
        saved = self._saved.get(prefix)
        if saved is not None and self._restore(prefix_seq, saved[0]):
            self._saved.move_to_end(prefix)
            length = saved[1]
        else:
            self.clear(prefix_seq)  # a failed restore may have put back part of it
            tokens = self.tokenize(prefix, bos=self.add_bos)
            try:
                for start in range(0, len(tokens), self.n_batch):
                    chunk = tokens[start : start + self.n_batch]
                    self.decode(
                        [Entry(prefix_seq, t, start + i, False) for i, t in enumerate(chunk)]
                    )
            except DecodeError:
                # The id goes back, without the cells of the part that was evaluated.
                self.clear(prefix_seq)
                self._free_prefix_ids.append(prefix_seq)
                raise
            length = len(tokens)
            self.prefixes_evaluated += 1
            self._save(prefix, prefix_seq, length)
        self._prefixes[prefix] = (prefix_seq, length)
        return prefix_seq, length

    def sequence_state(self, seq: int) -> Any:
        """llama.cpp's copy of a sequence's cells (positions, keys, values); None if it fails."""
        size = self._ll.llama_state_seq_get_size(self.ctx, seq)
        state = (ctypes.c_uint8 * size)()
        if self._ll.llama_state_seq_get_data(self.ctx, state, size, seq) != size:
            return None
        return state

    def _save(self, prefix: str, prefix_seq: int, length: int) -> None:
        state = self.sequence_state(prefix_seq)
        if state is None:
            return  # not saved: evaluated again when it comes back
        self._saved[prefix] = (state, length)
        while len(self._saved) > SAVED_PREFIXES:
            self._saved.popitem(last=False)

    def _restore(self, prefix_seq: int, state: Any) -> bool:
        return bool(self._ll.llama_state_seq_set_data(self.ctx, state, len(state), prefix_seq))

    # Decoding

    def decode(self, entries: list[Entry]) -> list[tuple[int, int]]:
        """Decode one batch; for every entry that asked for logits, the greedy next token with
        the entry's bias and without it."""
        batch: Any = self._batch
        for i, e in enumerate(entries):
            batch.token[i] = e.token
            batch.pos[i] = e.pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = e.seq
            batch.logits[i] = e.logits
        batch.n_tokens = len(entries)
        status = self._ll.llama_decode(self.ctx, batch)
        if status != 0:
            raise DecodeError(f"llama_decode returned {status}")
        out = []
        for i, e in enumerate(entries):
            if e.logits:
                pointer = self._ll.llama_get_logits_ith(self.ctx, i)
                logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
                if e.ban is not None:
                    logits = logits.copy()  # the buffer is llama.cpp's own
                    logits[e.ban] = -np.inf
                best = _greedy(logits, e.rows)
                steered = best
                if e.bias:
                    # A copy: the logits buffer is llama.cpp's own.
                    biased = logits.copy()
                    tokens = np.fromiter(e.bias.keys(), dtype=np.int64)
                    biased[tokens] += np.fromiter(e.bias.values(), dtype=biased.dtype)
                    steered = _greedy(biased, e.rows)
                out.append((steered, best))
        return out

    def forget_from(self, seq: int, pos: int) -> None:
        """Take a sequence's cells from `pos` on out of the cache (a step back)."""
        self._ll.llama_memory_seq_rm(self.mem, seq, pos, -1)

    def close(self) -> None:
        ll = self._ll
        if self._batch is not None:
            ll.llama_batch_free(self._batch)
            self._batch = None
        if self.ctx:
            ll.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            ll.llama_model_free(self.model)
            self.model = None
