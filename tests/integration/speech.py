"""Speech with known text: espeak-ng speaks sentence by sentence, sox joins them, so the test
knows the words and when each sentence starts."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

SENTENCES = [
    "The morning train to the coast was late again, so the passengers waited on the cold platform.",
    "A small bakery on the corner sells fresh bread every day before sunrise.",
    "Our team planted many young trees along the river during the spring festival.",
    "The museum opened a new hall with old maps of the northern islands.",
    "Heavy rain flooded the football field, and the final match was moved to Sunday.",
    "My grandmother keeps her recipes in a wooden box on the kitchen shelf.",
    "The library will stay open late during the exam period for all students.",
    "Engineers replaced the old bridge with a wider one that carries two bus lanes.",
    "A farmer in the valley grows apples, pears and a few rows of sweet corn.",
    "The orchestra practiced the new symphony for several weeks before the concert.",
    "Children at the summer camp learned to build simple boats from plastic bottles.",
    "The hospital hired more nurses to work in the new children's ward.",
    "Strong winds knocked down power lines across the western part of the county.",
    "The city council voted to turn the empty parking lot into a public garden.",
    "Volunteers cleaned the beach and collected many bags of rubbish.",
    "The chess club meets every Thursday evening in the back room of the cafe.",
    "A lighthouse keeper once lived alone on the rocky island for many years.",
    "The bakery's famous lemon cake sold out within an hour of the shop opening.",
    "Scientists measured the temperature of the lake at different depths each month.",
    "The old cinema downtown shows classic films on the first Friday of every month.",
    "Our neighbor repairs bicycles in his garage and gives them to local schools.",
    "The mountain road closes in winter because of snow and falling rocks.",
    "A group of students designed a robot that sorts paper from plastic waste.",
    "The village market sells honey, cheese and handmade soap every Saturday morning.",
    "The pilot announced that the plane would land a little early.",
    "Fishermen returned to the harbor with boxes full of fresh mackerel and cod.",
    "The teacher asked everyone to read the first chapter of the novel by Monday.",
    "A new cycling path now connects the university with the central station.",
    "The zoo welcomed a baby elephant that was born during the night.",
    "Workers painted the school walls bright yellow during the summer holidays.",
    "The radio station plays jazz music every night after dinner.",
    "Hikers should carry enough water because there are no shops on the trail.",
    "The company opened a small office in the harbor district last year.",
    "Our family travels to the lake house every August to swim and fish.",
    "The firefighters rescued a cat that was stuck on the roof of the church.",
    "A famous painter donated several pictures to the town hall collection.",
    "The students built a weather station on the roof of the science building.",
    "The baker wakes up very early to prepare the dough for the morning.",
    "Tourists often take photos of the colorful houses along the old canal.",
    "The festival ended with fireworks over the river just before midnight.",
]
GAP_SECONDS = 0.6


@dataclass(frozen=True)
class Speech:
    path: Path
    text: str
    starts: list[float]  # when each sentence starts, in seconds

    def sentence_at(self, index: int) -> tuple[str, float]:
        return SENTENCES[index], self.starts[index]


def words(text: str) -> str:
    """Lower-case words without punctuation: what a word error rate compares."""
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def _duration(path: Path) -> float:
    out = subprocess.run(["soxi", "-D", str(path)], check=True, capture_output=True, text=True)
    return float(out.stdout)


def make_speech(
    directory: Path,
    sentences: list[str] = SENTENCES,
    name: str = "speech",
    repeatable: bool = False,
) -> Speech:
    """Speak `sentences` into `<directory>/<name>.wav` (16 kHz mono), with their start times.
    sox dithers the resampled file with a random seed, so each file differs in its noise, and
    tiny.en's word error rate on it by up to 0.03; `repeatable` seeds it, for tests that
    compare two decodings' error rates."""
    parts: list[str] = []
    starts: list[float] = []
    clock = 0.0
    gap = directory / "gap.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "22050",
            "-c",
            "1",
            "-b",
            "16",
            str(gap),
            "trim",
            "0",
            str(GAP_SECONDS),
        ],
        check=True,
    )
    for i, sentence in enumerate(sentences):
        part = directory / f"{name}-{i:03d}.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(part), sentence], check=True
        )
        starts.append(clock)
        clock += _duration(part) + GAP_SECONDS
        parts += [str(part), str(gap)]
    path = directory / f"{name}.wav"
    seeded = ["-R"] if repeatable else []
    subprocess.run(["sox", *seeded, *parts, "-r", "16000", str(path)], check=True)
    for spoken in parts[::2]:
        Path(spoken).unlink()
    return Speech(path, " ".join(sentences), starts)
