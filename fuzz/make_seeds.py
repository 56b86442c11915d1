#!/usr/bin/env python3
"""Writes the seed inputs of topic_matcher_fuzz into fuzz/corpus/.

The seeds are small programs in the fuzzer's input format (see the comment at the top of
topic_matcher_fuzz.cpp), written here readably so they can be reviewed and changed along
with the format. Run it after changing the format: python3 fuzz/make_seeds.py
"""
import pathlib

# Must match pattern_words / key_words in topic_matcher_fuzz.cpp (first occurrence wins).
PATTERN_WORDS = ["a", "b", "c", "", "*", "#", "*", "#"]
KEY_WORDS = ["a", "b", "c", "", "a", "b", "#", "*"]


def words(text, alphabet):
    """A pattern or key: its word count (top bit clear: new words), then one byte per word."""
    if text == "":
        return [0]
    ws = text.split(".")
    assert len(ws) < 8, text
    return [len(ws)] + [alphabet.index(w) for w in ws]


def bind(pattern, value): return [0] + words(pattern, PATTERN_WORDS) + [value]
def unbind(pattern, value): return [3] + words(pattern, PATTERN_WORDS) + [value]
def route(key): return [5] + words(key, KEY_WORDS)
def nested(outer, inner1, inner2):
    return [9] + words(outer, KEY_WORDS) + words(inner1, KEY_WORDS) + words(inner2, KEY_WORDS)
def cache(code): return [10, code]  # 0: off, n: 2**(n-1) entries
def copy_and_move(): return [11, 1]
def unbind_all(): return [11, 0]
def flood(): return [11, 3]  # 1,103 distinct keys: the cache steps aside


def ops(cache_byte, *program):
    """Ops mode: an odd first byte, the cache size byte (1 + b % 16 entries), the program."""
    out = [1, cache_byte]
    for op in program:
        out += op
    return bytes(out)


def text(*strings):
    """Text mode: an even first byte, then strings separated by newlines."""
    return b"\x00" + "\n".join(strings).encode()


SEEDS = {
    # RabbitMQ's tutorial 5 bindings and keys.
    "ops-tutorial": ops(3, bind("*.a.*", 0), bind("b.#", 1), bind("b.b.a.a", 1),
                        route("c.a.b"), route("b.a.c"), route("b"), route("b.a.a"),
                        route("a.a.a"), route("b.b.a.a")),
    # Per-pair counts, and '#.#' being '#'.
    "ops-counts": ops(0, bind("a.#", 0), bind("a.#.#", 0), route("a"), unbind("a.#", 0),
                      route("a.b"), unbind("a.#", 0), unbind("a.#", 0), route("a")),
    # The empty key, the empty pattern and empty words.
    "ops-empty-words": ops(1, bind("", 0), bind("*", 1), bind(".", 2), bind("#.", 3),
                           route(""), route("."), route("a."), route("a"), unbind("", 0), route("")),
    # Cache hits before and after binds, unbinds, resizing, copying and clearing.
    "ops-cache": ops(0, route("a.b"), bind("a.*", 0), route("a.b"), route("a.b"), bind("#", 1),
                     route("a.b"), unbind("a.*", 0), route("a.b"), cache(0), route("a.b"), cache(7),
                     route("a.b"), route("b.b"), route("a.b"), copy_and_move(), route("a.b"),
                     unbind_all(), route("a.b")),
    # The cache stepping aside after a flood of distinct keys, while patterns change.
    "ops-cache-flood": ops(3, bind("a.*", 0), bind("#.b", 1), route("a.b"), route("a.b"), flood(),
                           route("a.b"), bind("a.b", 2), route("a.b"), unbind("a.*", 0), route("a.b"),
                           flood(), route("a.b"), route("a.b")),
    "ops-nested": ops(0, bind("#", 0), bind("a.*", 1), nested("a.b", "a.b", "c"),
                      nested("a.b", "c", "a.b"), route("a.b"), route("c")),
    "ops-many-hashes": ops(5, bind("#.a.#.b.#.#.*", 0), bind("*.#.a", 1), bind("#.*", 2),
                           route("a.b.a.b.c"), route("c.a"), route("a.b.b.b.b.b.a"), route("a.#.*")),
    # Regressions. A match nested in a cache miss's callback used a scratch of its own
    # (thread_local per callback type), did not know it was nested, and refilled the
    # entry the outer match was filling: '' was then cached as matching nothing.
    "regress-nested-match-on-cache-miss": ops(0, bind("", 0), nested("", "a.a", "a.a"), route("")),
    # A match nested in a cache hit's callback could evict the entry being read: the hit
    # made 'a' most recent, the nested hit on 'b' made it least, the nested miss on 'c'
    # then took its place while the outer loop still read it (3 values, so it reads on).
    "regress-nested-match-on-cache-hit": ops(1, bind("#", 0), bind("a.#", 1), bind("*", 2),
                                             route("a"), route("b"), nested("a", "b", "c"), route("a")),
    "text-wildcards": text("*.orange.*", "*.*.rabbit", "lazy.#", "quick.orange.rabbit",
                           "lazy.orange.elephant", "lazy", "#.#", "*.#.*", ""),
    # Words that only look like wildcards, and empty words.
    "text-odd-words": text("a#.*b", "#", "**.##", "..", "", "#.*.#", "a.b#.c", "*", ".#."),
    # Wildcards as literal words of routing keys.
    "text-literal-wildcards-in-keys": text("a.*", "a.#", "#", "*.*", "#.a", "*"),
}


def main():
    corpus = pathlib.Path(__file__).resolve().parent / "corpus"
    corpus.mkdir(exist_ok=True)
    for name, data in SEEDS.items():
        (corpus / name).write_bytes(data)
    print(f"wrote {len(SEEDS)} seeds to {corpus}")


if __name__ == "__main__":
    main()
