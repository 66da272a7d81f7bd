"""One SQL lexer for the two programs whose reading of PostgreSQL text we must reproduce.

psql runs the baseline dumps and the Flyway engine splits the migrations. Both follow
PostgreSQL's own scanner (scan.l) for quotes and comments and differ in what they add on top;
those differences are the fields of `Dialect`. The lexer is fed one line at a time, so a multi-GB
dump is never held in memory, and it keeps exact 1-based line numbers and character offsets.

It reports psql meta-commands (`MetaCommand`) and statements (`Span`: where a statement starts,
where its code starts, where it ends, and where the data of its `COPY ... FROM stdin` is).

The psql dialect is psql 18.6's reading (psqlscan.l, psqlscanslash.l, command.c): the bundled
client's, which the tests run to check it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal


@dataclass(frozen=True)
class Dialect:
    """What a client does on top of PostgreSQL's lexical rules."""

    name: str
    # A backslash outside quotes starts a meta-command, and `:name` is a psql variable (whose
    # value we cannot know; it is taken as unset, which is what pg_dump output relies on).
    meta_commands: bool
    # The server sees the whole text; psql lexes each line without its `\n`, so for psql a string
    # never continues across a line break (`E'a'` then `'b'` on the next line are two strings).
    sees_newlines: bool
    # Which `;` stay inside a statement. psql: after BEGIN in CREATE [OR REPLACE]
    # FUNCTION|PROCEDURE, CASE opening a nested block inside one; Flyway: after BEGIN ATOMIC,
    # up to the next END. END closes a block; a `;` in parentheses never splits.
    blocks: Literal["psql", "flyway"]
    # psql tells COPY ... FROM STDIN by a statement's first identifiers and keeps them until the
    # next identifier, so a following statement without any expects COPY data too.
    copy_words_linger: bool
    # COPY data ends at a line that is exactly `\.` (psql) or is `\.` once trimmed (Flyway).
    copy_end_trimmed: bool
    # Flyway drops the rest of the `COPY ... FROM stdin;` line; psql runs it after the data.
    copy_skips_rest_of_line: bool
    # The prefixes of strings whose backslashes escape. PostgreSQL: `E'`/`e'`. Flyway 10.17.3's
    # Parser.readToken: `E'`, `B'`, `X'`, upper case only; a lowercase `e'...'` is a word and a
    # plain string to it, so `e'a\';...'` ends at the `\'` and the `;` splits the statement.
    escape_quotes: str = "eE"
    # scan.l's xqs: `E'a'`, a newline, then `'b'` is one string, still escaping; Flyway reads
    # each quote on its own.
    escape_quote_continues: bool = True
    # PostgreSQLParser.handleAlternativeStringLiteral takes every `$` starting a token for a
    # dollar quote whose tag runs to the next `$`, newlines included: `$1` in a BEGIN ATOMIC
    # body swallows the rest of the script (PostgreSQL reads a parameter).
    any_dollar_quotes: bool = False


PSQL = Dialect(
    name="psql",
    meta_commands=True,
    sees_newlines=False,
    blocks="psql",
    copy_words_linger=True,
    copy_end_trimmed=False,
    copy_skips_rest_of_line=False,
)
FLYWAY_POSTGRES = Dialect(
    name="flyway-postgresql",
    meta_commands=False,
    sees_newlines=True,
    blocks="flyway",
    copy_words_linger=False,
    copy_end_trimmed=True,
    copy_skips_rest_of_line=True,
    escape_quotes="EBX",
    escape_quote_continues=False,
    any_dollar_quotes=True,
)


@dataclass(frozen=True)
class MetaCommand:
    """A psql meta-command: `\\name argument`, as psql would execute it."""

    line: int
    name: str
    argument: str

    @property
    def text(self) -> str:
        return f"\\{self.name} {self.argument}".strip()


@dataclass(frozen=True)
class Span:
    """One statement's place in the input: character offsets, ends exclusive."""

    start: int  # its first character that is not blank (a comment counts)
    code: int  # its first character outside comments
    end: int  # just past its `;`, or past its last non-blank character at the end of the input
    line: int  # the line of `start`
    copy_data: tuple[int, int] | None = None  # the data lines read after it (COPY ... FROM stdin)
    # psql 18.6 reads COPY data after this statement only because the one before was a COPY
    # (copy_words_linger); an older psql runs those lines as SQL instead.
    copy_inherited: bool = False


_BLANK = " \t\n\r\f\v"
_IDENT_START = "A-Za-z_\x80-\U0010ffff"
_IDENT = f"[{_IDENT_START}][{_IDENT_START}0-9$]*"
_VARIABLE_CHAR = f"[{_IDENT_START}0-9]"
# Numbers and parameters swallow an identifier glued to them (scan.l's *_junk rules), so neither
# `1e'x'` nor `$1e'x'` starts an E'' string; `1$$` does start a dollar quote.
_NUMBER = rf"(?:\$?\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?(?:{_IDENT})?"


def _token_pattern(psql: bool, escape_quotes: str, any_dollar: bool) -> re.Pattern[str]:
    """Blanks, then the token that matters outside quotes, tried in the order scan.l's longest
    match would pick it."""
    plain = "".join(c for c in "bBxXnN" if c not in escape_quotes)
    alternatives = [
        r"(?P<comment>--[^\r\n]*)",  # a newline is \n or \r, for the server and psql alike
        r"(?P<block_comment>/\*)",
        rf"(?P<e_string>[{escape_quotes}]')",
        rf"(?P<string>(?:[{plain}]|[uU]&)?')",  # these quote like '...' does
        r'(?P<quoted_ident>(?:[uU]&)?")',
        rf"(?P<dollar>\$(?:[{_IDENT_START}][{_IDENT_START}0-9]*)?\$)",
        *([r"(?P<dollar_tag>\$)"] if any_dollar else []),
        rf"(?P<number>{_NUMBER})",
        rf"(?P<word>{_IDENT})",
        r"(?P<open>\()",
        r"(?P<close>\))",
        r"(?P<semicolon>;)",
    ]
    if psql:
        alternatives += [
            r"(?P<backslash>\\)",
            r"(?P<typecast>::)",
            rf"(?P<variable>:(?:{_VARIABLE_CHAR}+|'{_VARIABLE_CHAR}+'|\"{_VARIABLE_CHAR}+\""
            rf"|\{{\?{_VARIABLE_CHAR}+\}}))",
        ]
    alternatives.append(rf"(?P<other>[^-/'\"$\\;():.\d{_IDENT_START}{_BLANK}]+|[\s\S])")
    return re.compile(f"[{_BLANK}]*(?:{'|'.join(alternatives)})?")


_TOKENS = {
    d.name: _token_pattern(d.meta_commands, d.escape_quotes, d.any_dollar_quotes)
    for d in (PSQL, FLYWAY_POSTGRES)
}
# Tokens that only move the parenthesis depth once identifiers no longer matter (psql): up to a
# quote, comment, dollar, semicolon, backslash or colon, or an identifier glued to a quote.
_INERT = re.compile(
    rf"(?:[^-/'\"$\\;:\d{_IDENT_START}{_BLANK}]+|[{_BLANK}]+|(?>{_IDENT})(?!['\"])"
    rf"|(?>{_NUMBER})|-(?!-)|/(?!\*)|::)+"
)
_E_STRING_STOP = re.compile(r"[\\']")
_NEWLINE = re.compile(r"[\r\n]")
_COMMENT_MARK = re.compile(r"/\*|\*/")
_META_NAME = re.compile(r"[^ \t\n\r\f\v\\]*")
# A meta-command argument: unquoted text, '...' (backslash escapes), "..." or `...`.
_META_ARGUMENT = re.compile(r"""[^\\'"`]+|'(?:[^'\\]|\\[\s\S]?)*'?|"[^"]*"?|`[^`]*`?""")
# psql's commands (command.c, exec_command), beside \copy (any case) and \d..., \lo_...
_COMMANDS = frozenset(
    "a bind bind_named C c connect cd close_prepared conninfo copyright crosstabview e edit ef ev"
    " echo qecho warn elif else endif endpipeline encoding errverbose f flush flushrequest g gx"
    " gdesc getenv getresults gexec gset h help H html i include ir include_relative if l list lx"
    " listx l+ list+ lx+ listx+ l+x list+x o out p print parse password prompt pset q quit r reset"
    " restrict unrestrict s sendpipeline set setenv sf sf+ sv sv+ startpipeline syncpipeline t T"
    " timing unset w write watch x z zS zx zSx zxS ! ?".split()
)
# Those that take the whole rest of the line, and those that do after a leading `|`.
_WHOLE_LINE = frozenset({"!", "ef", "ev", "sf", "sf+", "sv", "sv+", "h", "help"})
_PIPE_TO_END = frozenset({"o", "out", "g", "gx", "w", "write"})
_JAVA_TRIM = "".join(chr(c) for c in range(33))  # String.trim() drops every char <= ' '
# psqlscan.l notes the first 8 identifiers at depth 0 of a statement by these marks.
_MARKS = {
    **{"create": "c", "or": "o", "replace": "r", "function": "f", "procedure": "p"},
    **{"copy": "C", "from": "F", "stdin": "S", "stdout": "S"},
}

_NORMAL, _QUOTE, _E_QUOTE, _E_QUOTE_STOP, _IDENT_QUOTE, _DOLLAR, _COMMENT, _DOLLAR_TAG = range(8)
_OPENS = {
    "string": _QUOTE,
    "e_string": _E_QUOTE,
    "quoted_ident": _IDENT_QUOTE,
    "dollar": _DOLLAR,
    "dollar_tag": _DOLLAR_TAG,
}


def _creates_routine(marks: str) -> bool:
    """CREATE [OR REPLACE] FUNCTION|PROCEDURE."""
    m = marks.ljust(4)
    return m[0] == "c" and (m[1] in "fp" or (m[1:3] == "or" and m[3] in "fp"))


def _copies_from_stdin(marks: str) -> bool:
    """COPY first; the first FROM (by the 7th identifier) right before STDIN."""
    m = marks.ljust(8)
    first_from = m.find("F", 1, 7)
    return m[0] == "C" and first_from > 0 and m[first_from + 1] == "S"


@dataclass
class _Waiting:
    """A statement whose COPY data is still to be read."""

    span: Span
    blocks: int  # data blocks left, each ended by `\.`
    start: int = -1  # where its first block starts


class Lexer:
    """A state machine fed line by line (each line with its `\\n`, the last maybe without).

    `feed` returns the meta-commands and statements completed by that line, in order (a COPY
    statement once its data is read); `finish` those still open at the end of the input.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.line = 0  # lines fed so far
        self._tokens = _TOKENS[dialect.name]
        self._offset = 0  # of the next line
        self._state = _NORMAL
        self._tag = ""  # the dollar quote's delimiter
        self._seen = ""  # the end of what a tag of several lines was looked for in
        self._comment_depth = 0
        self._stop_newline = False  # after an E'' string: a newline seen, the string may go on
        self._stop_skipped = False  # after an E'' string: blanks or comments seen on this line
        self._marks = ""  # see _MARKS; they outlive their statement if copy_words_linger
        self._waiting: list[_Waiting] = []
        self._in_data = False
        self._last = 0  # just past the last non-blank character
        self._new_statement()

    def _new_statement(self) -> None:
        self._start: int | None = None
        self._start_line = 0
        self._code: int | None = None
        self._parens = 0
        self._blocks = 0
        self._fresh = False  # self._marks are this statement's (or this part's, after `\;`)
        self._previous_word = ""  # the last identifier at depth 0
        self._copies = 0  # parts that are COPY ... FROM stdin
        self._inherited = False
        self._words_matter = True  # False once no identifier can change how the statement ends

    @property
    def at_statement_start(self) -> bool:
        """No statement, string, comment or COPY data is open: the next line starts afresh."""
        return self._state == _NORMAL and self._code is None and not self._waiting

    @property
    def in_copy_data(self) -> bool:
        """Between `COPY ... FROM stdin;` and its end: only a line `\\.` means anything."""
        return self._in_data

    def skip_data(self, lines: int, chars: int) -> None:
        """The same as feeding `lines` lines of COPY data, `chars` characters in all, that the
        caller checked: none starts with `\\.` (enough where data ends only at `\\.` alone)."""
        if not self._in_data or self.dialect.copy_end_trimmed:
            raise ValueError("skip_data: only in COPY data that ends at `\\.` alone")
        self.line += lines
        self._offset += chars

    def feed(self, line: str) -> list[MetaCommand | Span]:
        self.line += 1
        base, self._offset = self._offset, self._offset + len(line)
        if self._in_data:
            return self._data_line(line, base)
        out: list[MetaCommand | Span] = []
        body = line
        if not self.dialect.sees_newlines and line.endswith("\n"):
            body = line[:-1]
        self._lex(body, base, out)
        if self._state == _E_QUOTE_STOP and self._stop_skipped and not self.dialect.sees_newlines:
            self._state = _NORMAL  # psql gave up on a continuation when the line ended
        self._stop_skipped = False
        if (content := len(line.rstrip(_BLANK))) and self._start is not None:
            self._last = base + content
        if self._waiting:
            self._in_data = True
            self._waiting[0].start = self._offset
        return out

    def finish(self) -> list[MetaCommand | Span]:
        """The end of the input: COPY data and an unterminated statement end here."""
        out: list[MetaCommand | Span] = []
        for waiting in self._waiting:
            start = self._offset if waiting.start < 0 else waiting.start
            out.append(replace(waiting.span, copy_data=(start, self._offset)))
        self._waiting.clear()
        self._in_data = False
        if self._code is not None and self._start is not None:
            out.append(Span(self._start, self._code, self._last, self._start_line))
        self._new_statement()
        self._state = _NORMAL
        return out

    def _data_line(self, line: str, base: int) -> list[MetaCommand | Span]:
        """A line of COPY data: only the end of the data matters."""
        if self.dialect.copy_end_trimmed:
            end = line.strip(_JAVA_TRIM) == "\\."
        else:
            end = line in ("\\.\n", "\\.\r\n", "\\.")
        if not end:
            return []
        waiting = self._waiting[0]
        waiting.blocks -= 1
        if waiting.blocks:
            return []
        self._waiting.pop(0)
        if self._waiting:
            self._waiting[0].start = self._offset
        else:
            self._in_data = False
        return [replace(waiting.span, copy_data=(waiting.start, base))]

    def _lex(self, body: str, base: int, out: list[MetaCommand | Span]) -> None:
        i, n = 0, len(body)
        while i < n:
            state = self._state
            if state == _NORMAL:
                i = self._normal(body, i, base, out)
            elif state == _QUOTE:
                end = body.find("'", i)
                i, self._state = (n, state) if end < 0 else (end + 1, _NORMAL)
            elif state == _IDENT_QUOTE:
                end = body.find('"', i)
                i, self._state = (n, state) if end < 0 else (end + 1, _NORMAL)
            elif state == _DOLLAR:
                i = self._dollar(body, i)
            elif state == _DOLLAR_TAG:
                end = body.find("$", i)
                self._tag += body[i:] if end < 0 else body[i : end + 1]
                i, self._state = (n, state) if end < 0 else (end + 1, _DOLLAR)
                self._seen = ""
            elif state == _E_QUOTE:
                i = self._e_quote(body, i)
            elif state == _E_QUOTE_STOP:
                i = self._e_quote_stop(body, i)
            else:
                i = self._block_comment(body, i)

    def _normal(self, body: str, i: int, base: int, out: list[MetaCommand | Span]) -> int:
        """One token outside quotes and comments; returns where the next one starts."""
        if not self._words_matter and (m := _INERT.match(body, i)):
            self._count_parens(m.group())  # a fast path through the bulk of INSERT statements
            return m.end()
        m = self._tokens.match(body, i)
        assert m is not None  # it may match nothing but blanks
        kind, end = m.lastgroup, m.end()
        if kind is None:
            return end
        i = m.start(kind)
        if kind in ("comment", "block_comment"):
            self._mark_start(base + i)
            if kind == "block_comment":
                self._state, self._comment_depth = _COMMENT, 1
            return end
        if kind == "backslash" and not body.startswith(("\\;", "\\:"), i):
            return self._meta_command(body, i, out)
        if kind == "semicolon" and self._parens == 0 and self._blocks == 0:
            self._end_statement(base + end, out)
            if self._waiting and self.dialect.copy_skips_rest_of_line:
                return len(body)
            return end
        self._mark_code(base + i)
        if kind == "word":
            self._word(m.group(kind).lower())
        elif kind == "backslash":  # psql passes `\;` and `\:` on as plain `;` and `:`
            if body[i + 1] == ";":
                self._end_part()  # psql sends both parts at once
            return i + 2
        elif kind == "open":
            self._parens += 1
        elif kind == "close":
            self._parens = max(self._parens - 1, 0)
        elif kind in _OPENS:
            self._state = _OPENS[kind]
            self._tag = m.group(kind)  # only a dollar quote's is looked for
        return end

    def _count_parens(self, run: str) -> None:
        opens, closes = run.count("("), run.count(")")
        if closes <= self._parens:
            self._parens += opens - closes
            return
        for ch in run:  # more `)` than open: the depth stops at 0, as psql's does
            if ch in "()":
                self._parens = self._parens + 1 if ch == "(" else max(self._parens - 1, 0)

    def _mark_start(self, offset: int) -> None:
        if self._start is None:
            self._start, self._start_line = offset, self.line

    def _mark_code(self, offset: int) -> None:
        self._mark_start(offset)
        if self._code is None:
            self._code = offset

    def _word(self, word: str) -> None:
        """An identifier: what decides where a statement ends (blocks), and COPY ... FROM stdin.
        Only those at parenthesis depth 0 count, as in psqlscan.l."""
        if self._parens:
            return
        if not self._fresh:
            self._marks, self._fresh = "", True
        if len(self._marks) < 8:
            self._marks += _MARKS.get(word, " ")
        routine = _creates_routine(self._marks)
        if self.dialect.blocks == "psql":
            opens = word == "begin" and routine
        else:
            opens = word == "atomic" and self._previous_word == "begin"
        # psql nests CASE inside a body; Flyway 10.17.3 does not (PostgreSQLParser.adjustBlockDepth
        # closes BEGIN ATOMIC at the first END, even a CASE's), so it splits such a body there.
        nests_case = self.dialect.blocks == "psql"
        if opens or (word == "case" and self._blocks and nests_case):
            self._blocks += 1
        elif word == "end" and self._blocks:
            self._blocks -= 1
        self._previous_word = word
        if self.dialect.blocks == "psql":
            # Past psql's eight identifiers, or if the first one is neither CREATE nor COPY,
            # only a function's BEGIN/CASE/END could matter.
            undecided = len(self._marks) < 8 and self._marks[0] in "cC"
            self._words_matter = routine or undecided or self._blocks > 0

    def _end_part(self) -> None:
        """The end of a statement, or of a part of one before psql's `\\;`."""
        if _copies_from_stdin(self._marks):
            self._copies += 1
            self._inherited = self._inherited or not self._fresh
        self._fresh, self._words_matter = False, True
        if not self.dialect.copy_words_linger:
            self._marks = ""

    def _end_statement(self, end: int, out: list[MetaCommand | Span]) -> None:
        self._end_part()
        if self._copies and self._code is None:
            self._mark_code(end - 1)  # psql sends a lone `;` too
        if self._code is not None and self._start is not None:
            span = Span(
                self._start, self._code, end, self._start_line, copy_inherited=self._inherited
            )
            if self._copies:
                self._waiting.append(_Waiting(span, self._copies))
            else:
                out.append(span)
        self._new_statement()

    def _meta_command(self, body: str, i: int, out: list[MetaCommand | Span]) -> int:
        """psqlscanslash.l: the name runs to a blank or backslash; the arguments to the end of
        the line or an unquoted backslash (`\\\\` is eaten as a separator, any other starts the
        next command), except for commands that take the whole line, and for a command psql does
        not know: it throws the rest of the line away. (So does a command that fails; that one
        cannot be told from here, and what follows it is reported as if it would run.)"""
        m = _META_NAME.match(body, i + 1)
        assert m is not None
        name, j = m.group(), m.end()
        copy = name.lower() == "copy"
        known = copy or name in _COMMANDS or name.startswith(("d", "lo_"))
        whole_line = (
            not known
            or copy
            or name in _WHOLE_LINE
            or (name in _PIPE_TO_END and body[j:].lstrip(_BLANK).startswith("|"))
        )
        end = len(body) if whole_line else j
        while end < len(body) and body[end] != "\\":
            argument = _META_ARGUMENT.match(body, end)
            assert argument is not None
            end = argument.end()
        out.append(MetaCommand(self.line, name, body[j:end].strip(_BLANK)))
        return end + 2 if body.startswith("\\\\", end) else end

    def _dollar(self, body: str, i: int) -> int:
        """Inside a dollar quote, up to its tag; a tag of several lines (Flyway's reading of a
        stray `$`) is looked for in what was read since, too."""
        if "\n" not in self._tag:
            end = body.find(self._tag, i)
            if end < 0:
                return len(body)
            self._state = _NORMAL
            return end + len(self._tag)
        text = self._seen + body[i:]
        end = text.find(self._tag)
        if end < 0:
            self._seen = text[-(len(self._tag) - 1) :]
            return len(body)
        self._state = _NORMAL
        return i + end + len(self._tag) - len(self._seen)

    @property
    def incomplete_at(self) -> int | None:
        """The line of a statement whose parentheses or BEGIN ATOMIC body are still open (at the
        end of the input, Flyway's "Incomplete statement"); None if there is none."""
        return (
            self._start_line if self._start is not None and (self._parens or self._blocks) else None
        )

    def _e_quote(self, body: str, i: int) -> int:
        m = _E_STRING_STOP.search(body, i)
        if m is None:
            return len(body)
        j = m.start()
        if body[j] == "\\" or body.startswith("''", j):
            return j + 2
        if not self.dialect.escape_quote_continues:
            self._state = _NORMAL
            return j + 1
        self._state = _E_QUOTE_STOP
        self._stop_newline = self._stop_skipped = False
        return j + 1

    def _e_quote_stop(self, body: str, i: int) -> int:
        """scan.l's xqs: after E'...' only blanks and `--` comments holding a newline may come
        before a `'` that continues the same string (so backslashes still escape)."""
        ch = body[i]
        if ch in " \t\f\v\r\n":
            self._stop_newline = self._stop_newline or ch in "\r\n"
            self._stop_skipped = True
            return i + 1
        if body.startswith("--", i):
            self._stop_skipped = True
            m = _NEWLINE.search(body, i)
            return len(body) if m is None else m.start()
        if ch == "'" and self._stop_newline:
            self._state = _E_QUOTE
            return i + 1
        self._state = _NORMAL
        return i

    def _block_comment(self, body: str, i: int) -> int:
        """Block comments nest, as in PostgreSQL."""
        m = _COMMENT_MARK.search(body, i)
        if m is None:
            return len(body)
        self._comment_depth += 1 if m.group() == "/*" else -1
        if self._comment_depth == 0:
            self._state = _NORMAL
        return m.end()


def split_lines(text: str) -> Iterator[str]:
    """Lines as psql and Flyway count them: ended by `\\n` only, each keeping it."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def lex(lines: Iterable[str], dialect: Dialect) -> Iterator[MetaCommand | Span]:
    """Everything the lexer reports for `lines`, streamed."""
    lexer = Lexer(dialect)
    for line in lines:
        yield from lexer.feed(line)
    yield from lexer.finish()
