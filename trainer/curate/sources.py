"""Finding and reading manuscript files: globs, `.penwrightignore`, symlinks, and every kind of bad input.

Reading never modifies a file. A file that cannot be used becomes a `Problem`
(file, line, what is wrong, what to do) and the rest of the folder is still read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from penwright.errors import InputFileError

READABLE_SUFFIXES = (".txt", ".md", ".markdown", ".docx")
MAX_FILE_BYTES = 64 * 1024 * 1024  # a long novel is ~1-2 MB; far beyond this is not a manuscript
MAX_LINE_CHARS = 200_000  # a paragraph of prose is a few thousand characters at most
_BINARY_MAGIC = (b"%PDF", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"\x7fELF", b"PK\x03\x04", b"{\\rtf")


@dataclass(frozen=True)
class Problem:
    """A file (or line) that was skipped, and why. `str()` is the message shown to the author."""

    path: str
    problem: str
    hint: str = "The file was skipped; nothing in it was changed."
    line: int | None = None

    def __str__(self) -> str:
        return str(InputFileError(self.path, self.problem, self.hint, self.line))

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "problem": self.problem, "hint": self.hint}


class SkipFile(Exception):
    """Raised by readers; carries the Problem."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


@dataclass(frozen=True)
class SourceFile:
    path: Path  # absolute, as found (may be a symlink inside the project)
    rel: str  # relative name shown to the author and stored in the manifest


class FileFilter:
    """Which files under a manuscript folder are manuscript: the one matcher curation and the daemon's watcher use.

    `include` and `exclude` globs and the `.penwrightignore` lines are gitignore rules (pathspec), relative to the
    folder: negations (`!keep.md`), bare names (`drafts` ignores a folder or file of that name anywhere), a
    leading `/` (anchored to the folder), `dir/` (folders only), `**`. Hidden files and folders are never
    manuscript. The ignore file is re-read when it changes.
    """

    def __init__(self, include: list[str], exclude: list[str], ignore_file: Path | None):
        from pathspec import PathSpec

        self.include = PathSpec.from_lines("gitignore", include or ["**/*"])
        self.exclude, self.ignore_file = list(exclude), ignore_file
        self._stamp: object = None
        self._ignore = None

    def wanted(self, rel: str) -> bool:
        """`rel`: the file's path relative to its manuscript folder, with `/` separators."""
        if any(part.startswith(".") for part in rel.split("/")):
            return False
        return self.include.match_file(rel) and not self._ignored().match_file(rel)

    def _ignored(self):
        import pathspec

        stamp = _stat_stamp(self.ignore_file)
        if self._ignore is None or stamp != self._stamp:
            lines = list(self.exclude)
            if stamp is not None:
                lines += self.ignore_file.read_text(encoding="utf-8", errors="replace").splitlines()
            self._ignore, self._stamp = pathspec.PathSpec.from_lines("gitignore", lines), stamp
        return self._ignore


def _stat_stamp(path: Path | None):
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size) if st is not None else None


def discover(
    sources: list[Path],
    include: list[str],
    exclude: list[str],
    ignore_file: Path | None,
    root: Path | None = None,
) -> tuple[list[SourceFile], list[Problem]]:
    """All manuscript files under `sources`, sorted, with problems for links that leave `root`.

    `include`/`exclude` are globs relative to each source folder (gitignore syntax, `**` allowed);
    `.penwrightignore` patterns apply relative to the same folders.
    """
    wanted = FileFilter(include, exclude, ignore_file)
    files: list[SourceFile] = []
    problems: list[Problem] = []
    for folder in sources:
        folder = Path(folder)
        if not folder.is_dir():
            problems.append(
                Problem(
                    str(folder),
                    "manuscript folder does not exist",
                    "Create it or fix manuscript.folders in penwright.yaml.",
                )
            )
            continue
        boundary = (root or folder).resolve()
        prefix = _display_prefix(folder, root)
        for path in sorted(_walk(folder, boundary, problems, prefix)):
            rel_in_folder = path.relative_to(folder).as_posix()
            if not wanted.wanted(rel_in_folder):
                continue
            rel = f"{prefix}{rel_in_folder}"
            if path.is_symlink() and not _inside(path, boundary):
                problems.append(
                    Problem(
                        rel,
                        f"is a link to {os.path.realpath(path)}, outside the project",
                        "Copy the file into the project instead of linking to it.",
                    )
                )
                continue
            files.append(SourceFile(path=path, rel=rel))
    return files, problems


def _display_prefix(folder: Path, root: Path | None) -> str:
    if root is None:
        return ""
    try:
        return folder.resolve().relative_to(root.resolve()).as_posix().rstrip("/") + "/"
    except ValueError:
        return ""


def _walk(folder: Path, boundary: Path, problems: list[Problem], prefix: str):
    """Files under `folder`; linked folders are followed only when they stay inside `boundary`."""
    for dirpath, dirnames, filenames in os.walk(
        folder,
        followlinks=False,
        onerror=lambda e: problems.append(
            Problem(e.filename or str(folder), f"cannot be read ({e.strerror})", "Check the folder's permissions.")
        ),
    ):
        base = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in list(dirnames):
            link = base / d
            if link.is_symlink():
                dirnames.remove(d)
                if _inside(link, boundary):
                    yield from _walk(link, boundary, problems, prefix)
                else:
                    rel = f"{prefix}{link.relative_to(folder).as_posix()}" if link.is_relative_to(folder) else str(link)
                    problems.append(
                        Problem(
                            rel,
                            f"is a link to {os.path.realpath(link)}, outside the project",
                            "Copy the folder into the project instead of linking to it.",
                        )
                    )
        for name in filenames:
            if not name.startswith("."):
                yield base / name


def _inside(path: Path, boundary: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(boundary)


def read_bytes(src: SourceFile) -> bytes:
    """The file's bytes, or SkipFile for unreadable, huge or empty files."""
    try:
        # O_NONBLOCK: opening a named pipe (FIFO) must not wait for a writer; only regular files are read
        fd = os.open(src.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise SkipFile(
                    Problem(
                        src.rel,
                        "is not a regular file (a named pipe, socket or device) and was not read",
                        "Keep only text files in the manuscript; remove it or add it to .penwrightignore.",
                    )
                )
            if info.st_size > MAX_FILE_BYTES:
                raise SkipFile(
                    Problem(
                        src.rel,
                        f"is {info.st_size / 1e6:.0f} MB, too large to be a manuscript (limit "
                        f"{MAX_FILE_BYTES // 2**20} MB)",
                        "Split it into chapter files, or exclude it.",
                    )
                )
            data = fh.read()
    except PermissionError:
        raise SkipFile(
            Problem(src.rel, "cannot be read (permission denied)", "Check the file's permissions (chmod u+r).")
        ) from None
    except OSError as err:
        raise SkipFile(Problem(src.rel, f"cannot be read ({err.strerror or err})")) from None
    if not data.strip():
        raise SkipFile(Problem(src.rel, "is empty", "Nothing to learn from yet; it will be read once it has text."))
    return data


def file_sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_text(data: bytes, rel: str) -> str:
    """Text of a .txt/.md file, or SkipFile for binary, non-UTF-8, or one-giant-line content."""
    head = data[:8192]
    if head.startswith(_BINARY_MAGIC) or b"\x00" in head:
        raise SkipFile(Problem(rel, "is a binary file, not text", "Export it as .txt, .md or .docx, or exclude it."))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise SkipFile(
            Problem(
                rel,
                f"is not valid UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})",
                "Re-save the file as UTF-8 (most editors: File > Save with encoding). It was skipped, not changed.",
                line,
            )
        ) from None
    _check_lines(text, rel)
    return text


def _check_lines(text: str, rel: str) -> None:
    start = 0
    lineno = 1
    while True:
        end = text.find("\n", start)
        stop = len(text) if end < 0 else end
        if stop - start > MAX_LINE_CHARS:
            raise SkipFile(
                Problem(
                    rel,
                    f"line {lineno} is {stop - start:,} characters long; that is not prose (generated or "
                    "minified text?)",
                    "Exclude the file, or break it into paragraphs.",
                    lineno,
                )
            )
        if end < 0:
            return
        start = end + 1
        lineno += 1


def read_docx(data: bytes, rel: str) -> str:
    """Paragraph text of a Word document, one blank line between paragraphs."""
    import io
    import zipfile

    try:
        import docx

        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
        raise SkipFile(
            Problem(
                rel,
                f"is not a readable Word document ({type(err).__name__}: {err})",
                "Open and re-save it in Word or LibreOffice as .docx.",
            )
        ) from None
    except Exception as err:  # python-docx raises its own PackageNotFoundError and lxml errors
        raise SkipFile(
            Problem(
                rel,
                f"is not a readable Word document ({type(err).__name__}: {err})",
                "Open and re-save it in Word or LibreOffice as .docx.",
            )
        ) from None
    parts = []
    for para in document.paragraphs:
        style = (para.style.name if para.style is not None else "") or ""
        text = para.text
        if style.lower().startswith(("heading", "title")) and text.strip():
            text = "# " + text.strip()  # headings become markdown headings so cleaning treats them alike
        parts.append(text)
    return "\n\n".join(parts)


def read_source(src: SourceFile) -> tuple[bytes, str]:
    """(raw bytes, text) of a manuscript file; SkipFile with a Problem when it cannot be used."""
    suffix = src.path.suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        raise SkipFile(
            Problem(src.rel, f"has an unsupported type '{suffix or 'none'}'", "Use .txt, .md or .docx, or exclude it.")
        )
    data = read_bytes(src)
    text = read_docx(data, src.rel) if suffix == ".docx" else decode_text(data, src.rel)
    if not text.strip():
        raise SkipFile(Problem(src.rel, "has no text", "Nothing to learn from yet."))
    return data, text
