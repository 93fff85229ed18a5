"""Errors raised by the ``tts`` package.

    InvalidInput (common.errors)
    └── TextError          notice text that cannot be turned into speech

``code`` is one of the ``TEXT_*`` constants below and is stable: the web layer
and the approval flow may branch on it. ``message`` is Simplified Chinese for the
township clerk who typed the text; ``detail`` is English for operators and logs.
"""

from __future__ import annotations

from typing import Final

from common.errors import InvalidInput

TEXT_EMPTY: Final = "text.empty"
TEXT_TOO_LONG: Final = "text.too_long"
TEXT_NO_SPEAKABLE: Final = "text.no_speakable"
TEXT_CONTROL_CHARS: Final = "text.control_chars"
TEXT_UNSUPPORTED_SCRIPT: Final = "text.unsupported_script"

_FIELD: Final = "text"


class TextError(InvalidInput):
    """The text given for broadcast cannot be spoken as it is."""

    default_code = "text.invalid"

    @classmethod
    def empty(cls) -> TextError:
        message = "播报内容为空，请输入要播报的文字。"
        return cls(
            message,
            code=TEXT_EMPTY,
            detail="text is empty or whitespace only",
            fields={_FIELD: message},
        )

    @classmethod
    def too_long(cls, length: int, limit: int) -> TextError:
        message = f"播报内容过长：共{length}个字，最多{limit}个字。请删减，或分成几条通知。"
        return cls(
            message,
            code=TEXT_TOO_LONG,
            detail=f"text has {length} characters; the limit is {limit}",
            fields={_FIELD: message},
        )

    @classmethod
    def control_char(cls, offset: int, char: str, count: int) -> TextError:
        """``offset`` is 0-based; the clerk is told the 1-based position."""
        message = f"第{offset + 1}个字符是看不见的控制字符，请删除后重试（可能是从其他软件复制时带入的）。"
        return cls(
            message,
            code=TEXT_CONTROL_CHARS,
            detail=(f"control character U+{ord(char):04X} at offset {offset} ({count} control character(s) in total)"),
            fields={_FIELD: message},
        )

    @classmethod
    def no_speakable(cls, *, pictographs_removed: bool) -> TextError:
        if pictographs_removed:
            message = "播报内容只有表情或符号，没有可以读出来的文字。"
            detail = "nothing speakable remains after removing emoji/pictographs and punctuation"
        else:
            message = "播报内容只有标点或符号，没有可以读出来的文字。"
            detail = "text contains only punctuation and symbols"
        return cls(message, code=TEXT_NO_SPEAKABLE, detail=detail, fields={_FIELD: message})

    @classmethod
    def unsupported_script(cls, offset: int, char: str, script: str, count: int) -> TextError:
        """Letters the Mandarin voices cannot read (Mongolian, Cyrillic, …); ``script`` is its Chinese name."""
        message = (
            f"第{offset + 1}个字符“{char}”是{script}，普通话语音读不出来（会念成乱码或字母名称）。"
            "请删去或改写成汉字；要播少数民族语言或外语，请上传录音。"
        )
        return cls(
            message,
            code=TEXT_UNSUPPORTED_SCRIPT,
            detail=(
                f"U+{ord(char):04X} at offset {offset} is not Han or Latin "
                f"({count} such character(s) in total); the Mandarin voices cannot read it"
            ),
            fields={_FIELD: message},
        )
