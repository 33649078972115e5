"""SRT and WebVTT files: parsed with `srt` and `webvtt-py`, written back with the translated
cue texts and everything else as it was (numbering, timings, cue identifiers and settings,
styling tags, WebVTT notes and styles)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import srt
import webvtt
from webvtt.errors import MalformedFileError
from webvtt.models import Caption, Timestamp

from dragoman.errors import InvalidRequest
from dragoman.scripts.store import Cue

SubtitleFormat = Literal["srt", "vtt"]
# A blank line ends a cue in both formats: a translation must not contain one.
_BLANK_LINES = re.compile(r"\n[ \t]*(?:\r?\n[ \t]*)+")


@dataclass(frozen=True, slots=True)
class ParsedCue:
    index: int  # 1-based position in the file
    start: str  # as the format writes it
    end: str
    start_ms: int
    end_ms: int
    text: str  # with its line breaks and styling tags

    @property
    def place(self) -> Cue:
        return Cue(self.index, self.start_ms, self.end_ms)


def detect_format(content: str) -> SubtitleFormat:
    return "vtt" if content.lstrip("\ufeff \t\r\n").startswith("WEBVTT") else "srt"


def _ms(delta: timedelta) -> int:
    return delta // timedelta(milliseconds=1)


def _vtt_ms(stamp: Timestamp) -> int:
    return ((stamp.hours * 60 + stamp.minutes) * 60 + stamp.seconds) * 1000 + stamp.milliseconds


def _vtt_stamp(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def cue_text(translation: str) -> str:
    """A translation as a cue's text: no blank line inside, no line breaks around it."""
    return _BLANK_LINES.sub("\n", translation.replace("\r\n", "\n").strip("\r\n"))


class SubtitleFile:
    def __init__(self, content: str, format: SubtitleFormat | None = None) -> None:
        self.format: SubtitleFormat = format or detect_format(content)
        self._srt: list[srt.Subtitle] = []
        self._vtt: webvtt.WebVTT | None = None
        try:
            if self.format == "srt":
                self._srt = list(srt.parse(content))
            else:
                self._vtt = webvtt.from_string(content)
        except (srt.SRTParseError, MalformedFileError, ValueError) as exc:
            raise InvalidRequest(f"content: not a valid {self.format.upper()} file.") from exc
        self.cues = self._cues()
        if not self.cues:
            raise InvalidRequest(f"content: no cues found in this {self.format.upper()} file.")

    def _cues(self) -> list[ParsedCue]:
        if self._vtt is not None:
            return [
                ParsedCue(
                    i,
                    caption.start,
                    caption.end,
                    _vtt_ms(caption.start_time),
                    _vtt_ms(caption.end_time),
                    caption.raw_text,
                )
                for i, caption in enumerate(self._vtt.captions, 1)
            ]
        return [
            ParsedCue(
                i,
                srt.timedelta_to_srt_timestamp(sub.start),
                srt.timedelta_to_srt_timestamp(sub.end),
                _ms(sub.start),
                _ms(sub.end),
                sub.content,
            )
            for i, sub in enumerate(self._srt, 1)
        ]

    def set_text(self, position: int, text: str) -> None:
        """The translated text of the cue at this 1-based position."""
        if self._vtt is not None:
            self._vtt.captions[position - 1].text = cue_text(text)
        else:
            self._srt[position - 1].content = cue_text(text)

    def content(self) -> str:
        if self._vtt is not None:
            return str(self._vtt.content)
        return str(srt.compose(self._srt, reindex=False))


def render(format: SubtitleFormat, cues: list[tuple[Cue, str]]) -> str:
    """A subtitle file from stored cues and their translations (an export)."""
    if format == "srt":
        return str(
            srt.compose(
                [
                    srt.Subtitle(
                        cue.index,
                        timedelta(milliseconds=cue.start_ms),
                        timedelta(milliseconds=cue.end_ms),
                        cue_text(text),
                    )
                    for cue, text in cues
                ],
                reindex=False,
            )
        )
    captions = [
        Caption(_vtt_stamp(cue.start_ms), _vtt_stamp(cue.end_ms), cue_text(text))
        for cue, text in cues
    ]
    return str(webvtt.WebVTT(captions=captions).content)
