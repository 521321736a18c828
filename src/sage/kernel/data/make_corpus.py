"""Regenerate `corpus.txt`, the text `sage-kernel demo` counts words in.

The text is pseudo-English made here, not taken from anywhere: sentences
drawn with a seeded RNG from a fixed vocabulary with Zipf-like word
frequencies (so a word count has a clear head and a long tail). The same
seed gives the same bytes on every machine and Python version >= 3.11.

    python -m sage.kernel.data.make_corpus [path]
"""

from __future__ import annotations

import random
import sys
import textwrap
from pathlib import Path

SEED = 27
TARGET_BYTES = 400_000

FUNCTION_WORDS = ["the", "of", "and", "to", "a", "in", "that", "is", "was", "he", "for", "it", "with", "as", "his", "on", "be", "at", "by", "this", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you", "were", "her", "all", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who", "will", "more", "no", "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can", "only", "other", "new", "some", "could", "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such", "like", "our", "over", "man", "me", "even", "most", "made", "after", "also", "did", "many", "before", "must", "through", "back", "years", "where", "much", "your", "way", "well", "down", "should", "because", "each", "just", "those", "people", "how", "too", "little", "state", "good", "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here", "between", "both", "life", "being", "under", "never", "day", "same", "another", "know", "while", "last", "might", "us", "great", "old", "year", "off", "come", "since", "against", "go", "came", "right", "used", "take", "three"]
NOUNS = ["river", "stream", "water", "stone", "bridge", "mill", "road", "field", "garden", "house", "window", "door", "letter", "book", "morning", "evening", "light", "shadow", "wind", "rain", "harbor", "ship", "sail", "engine", "signal", "queue", "packet", "worker", "village", "market", "city", "island", "mountain", "valley", "forest", "path", "lamp", "candle", "clock", "bell", "tower", "wall", "gate", "yard", "orchard", "meadow", "winter", "summer", "spring", "autumn", "north", "south", "hill", "farmer", "sailor", "teacher", "clerk", "miller", "baker", "weaver", "smith", "traveler", "stranger", "child", "mother", "father", "friend", "neighbor", "story", "song", "map", "compass", "lantern", "harvest", "journey"]
VERBS = ["carried", "moved", "waited", "watched", "followed", "opened", "closed", "turned", "crossed", "passed", "gathered", "counted", "sent", "received", "kept", "found", "left", "heard", "saw", "remembered", "wrote", "read", "built", "mended", "walked", "ran", "rested", "listened", "answered", "asked", "called", "began", "ended", "held", "brought"]
ADJECTIVES = ["quiet", "old", "small", "large", "bright", "dark", "cold", "warm", "early", "late", "long", "short", "narrow", "wide", "slow", "quick", "steady", "distant", "near", "green", "grey", "silver", "golden", "busy", "empty", "full", "simple", "careful", "patient"]


def sentence(rng: random.Random, vocabulary: list[str], weights: list[float]) -> str:
    """One sentence: an adjective, a noun and a verb among frequency-weighted words."""
    words = rng.choices(vocabulary, weights, k=rng.randint(6, 18))
    words[1:1] = [rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS)]
    if rng.random() < 0.3:
        cut = rng.randint(3, len(words) - 2)
        words[cut - 1] += ","
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice("......!?")


def make_corpus() -> str:
    rng = random.Random(SEED)
    vocabulary = FUNCTION_WORDS + NOUNS + VERBS + ADJECTIVES
    weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(vocabulary))]
    paragraphs: list[str] = []
    size = 0
    while size < TARGET_BYTES:
        body = " ".join(sentence(rng, vocabulary, weights) for _ in range(rng.randint(3, 8)))
        paragraphs.append(textwrap.fill(body, 72))
        size += len(paragraphs[-1]) + 2
    return "\n\n".join(paragraphs) + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("corpus.txt")
    path.write_text(make_corpus(), encoding="utf-8")


if __name__ == "__main__":
    main()
