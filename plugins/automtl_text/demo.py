"""The ``text`` demo: joint intent detection and slot filling on generated assistant requests.

No installed package ships an intent/slot corpus, so the demo writes one from
templates: six intents, eleven slot types, multi-word values ("rio de
janeiro"), optional politeness, casing and punctuation. A third of every slot
list is held out of training and appears only in validation requests, so the
tagger must read slots from context rather than memorise values. One training
request in ten carries no tags (intent only): it is masked out of the tagging
loss, as unlabelled rows are.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import yaml

from automtl_text.tokens import tokenize

VALUES: dict[str, list[str]] = {
    "city": [
        "boston", "denver", "new york", "san francisco", "chicago", "seattle", "austin", "miami", "atlanta",
        "dallas", "portland", "phoenix", "los angeles", "las vegas", "salt lake city", "detroit", "houston",
        "nashville", "paris", "london", "berlin", "madrid", "rome", "lisbon", "tokyo", "rio de janeiro",
        "buenos aires", "cape town", "hong kong", "mexico city", "oslo", "dublin", "vienna", "prague",
        "sydney", "toronto", "montreal", "new orleans", "st. louis", "kansas city",
    ],
    "date": [
        "tomorrow", "today", "tonight", "next monday", "next friday", "on saturday", "on sunday", "this weekend",
        "next week", "on march 3rd", "on july 14th", "on the 21st", "in two days", "on christmas eve",
        "next tuesday", "on new year's day", "this evening", "on june 2nd",
    ],
    "time": [
        "6 am", "7:30", "noon", "midnight", "8 o'clock", "5:45 pm", "half past six", "9 pm", "quarter to seven",
        "10:15", "6:00", "seven thirty", "11 am", "4 pm",
    ],
    "cuisine": [
        "italian", "thai", "mexican", "japanese", "indian", "french", "greek", "korean", "vietnamese",
        "chinese", "ethiopian", "spanish", "lebanese", "turkish", "peruvian",
    ],
    "party_size": ["two", "three", "four", "five", "six", "2", "4", "8", "ten", "a dozen"],
    "nights": ["two", "three", "four", "five", "a couple of", "seven", "ten", "2", "3"],
    "artist": [
        "the beatles", "taylor swift", "miles davis", "adele", "radiohead", "nina simone", "daft punk",
        "bob marley", "queen", "beyonce", "johnny cash", "the rolling stones", "bjork", "prince", "coldplay",
        "ella fitzgerald", "kendrick lamar", "pink floyd",
    ],
    "song": [
        "yesterday", "hey jude", "so what", "hello", "creep", "feeling good", "get lucky", "one love",
        "bohemian rhapsody", "halo", "hurt", "paint it black", "purple rain", "yellow", "wish you were here",
        "shake it off", "summertime", "blue in green",
    ],
}

#: intent -> templates; {slot} or {slot:role} marks a slot, tagged with the role (default: the slot name).
TEMPLATES: dict[str, list[str]] = {
    "book_flight": [
        "book a flight from {city:from_city} to {city:to_city} {date}",
        "i need to fly to {city:to_city} {date}",
        "find me flights from {city:from_city} to {city:to_city}",
        "are there any flights to {city:to_city} {date}",
        "get me a ticket to {city:to_city} leaving from {city:from_city}",
        "fly from {city:from_city} to {city:to_city} {date} around {time}",
        "cheapest flight to {city:to_city}",
    ],
    "get_weather": [
        "what is the weather in {city} {date}",
        "will it rain in {city} {date}",
        "how hot is it in {city}",
        "weather forecast for {city}",
        "do i need an umbrella in {city} {date}",
        "is it going to snow {date} in {city}",
    ],
    "book_hotel": [
        "book a hotel in {city} for {nights} nights",
        "find a room in {city} {date}",
        "i need a place to stay in {city} for {nights} nights starting {date}",
        "reserve a hotel near downtown {city}",
    ],
    "book_restaurant": [
        "reserve a table for {party_size} at a {cuisine} restaurant in {city}",
        "book a {cuisine} place for {party_size} people {date}",
        "i want {cuisine} food {date} at {time}",
        "find a {cuisine} restaurant near me",
        "table for {party_size} {date} at {time}",
    ],
    "play_music": [
        "play {song} by {artist}",
        "put on some {artist}",
        "play something by {artist}",
        "i want to hear {song}",
        "play the song {song}",
        "shuffle {artist}",
    ],
    "set_alarm": [
        "wake me up at {time}",
        "set an alarm for {time} {date}",
        "alarm at {time} please",
        "remind me at {time} {date}",
    ],
}
OPENERS = ["", "", "", "please ", "can you ", "hey, ", "could you ", "i would like to ", "ok, "]
CLOSERS = ["", "", "", "?", ".", "!", ", please", " thanks"]


def held_out(values: list[str]) -> tuple[list[str], list[str]]:
    """Every third value is kept for validation only."""
    return [v for i, v in enumerate(values) if i % 3 != 2], [v for i, v in enumerate(values) if i % 3 == 2]


def request(rng: random.Random, intent: str, values: dict[str, list[str]]) -> dict:
    """One request: raw text, its tokens (by the serving tokeniser), IOB2 tags and the intent."""
    template = rng.choice(TEMPLATES[intent])
    words: list[str] = []
    tags: list[str] = []
    text = ""
    rest = rng.choice(OPENERS) + template
    while rest:
        start = rest.find("{")
        literal, rest = (rest, "") if start < 0 else (rest[:start], rest[start:])
        if literal:
            text += literal
            pieces = tokenize(literal, lowercase=False)
            words += pieces
            tags += ["O"] * len(pieces)
        if rest:
            end = rest.index("}")
            slot, _, role = rest[1:end].partition(":")
            value = rng.choice(values[slot])
            if rng.random() < 0.3:
                value = string.capwords(value)
            text += value
            pieces = tokenize(value, lowercase=False)
            words += pieces
            tags += [f"B-{role or slot}"] + [f"I-{role or slot}"] * (len(pieces) - 1)
            rest = rest[end + 1:]
    closer = rng.choice(CLOSERS)
    text = (text.rstrip() + closer).strip()
    pieces = tokenize(closer, lowercase=False)
    words += pieces
    tags += ["O"] * len(pieces)
    if rng.random() < 0.2:
        text = text[0].upper() + text[1:]
        words[0] = words[0][0].upper() + words[0][1:]
    assert tokenize(text, lowercase=False) == words, (text, words)
    return {"text": text, "tokens": words, "tags": tags, "intent": intent}


def make_requests(n: int, seed: int, values: dict[str, list[str]], untagged: float = 0.0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        record = request(rng, rng.choice(sorted(TEMPLATES)), values)
        if rng.random() < untagged:
            del record["tags"]  # intent only: masked out of the tagging loss
        out.append(record)
    return out


def text_demo(folder: Path, n_train: int = 2000, n_valid: int = 500) -> Path:
    """Write the intent + slot demo (train/validation JSONL and the experiment file) into ``folder``."""
    split = {slot: held_out(vals) for slot, vals in VALUES.items()}
    train_values = {slot: seen for slot, (seen, _) in split.items()}
    valid_values = {slot: seen + unseen for slot, (seen, unseen) in split.items()}
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in (("train.jsonl", make_requests(n_train, 0, train_values, untagged=0.1)),
                          ("valid.jsonl", make_requests(n_valid, 1, valid_values))):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records))
    experiment = {
        "name": "text",
        "data": {"train": "train.jsonl", "valid": "valid.jsonl"},
        "inputs": [{"name": "text", "type": "text", "column": "text"}],
        "tasks": [
            {"name": "intent", "type": "classification", "target": "intent"},
            {"name": "slots", "type": "text", "tokens": "tokens", "tags": "tags"},
        ],
        "space": "text",
        "search": {"trials": 8, "epochs": 10, "patience": 3},
    }
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path
