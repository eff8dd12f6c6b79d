"""``python -m face_recognition_service.gallery build|inspect`` (see gallery/__init__.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from ..errors import ServiceError
from .build import MAX_PROBLEM_LINES, BuildError, build
from .format import open_snapshot


def _build(args: argparse.Namespace) -> int:
    try:
        result = build(args.input, args.output, check_hygiene=args.hygiene)
    except BuildError as exc:
        for line in exc.problems[:MAX_PROBLEM_LINES]:
            print(f"refused: {line}", file=sys.stderr)
        if len(exc.problems) > MAX_PROBLEM_LINES:
            print(f"refused: ... and {len(exc.problems) - MAX_PROBLEM_LINES} more", file=sys.stderr)
        print(f"{args.input}: {len(exc.problems)} problem(s); no snapshot written", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot read or write: {exc.strerror} ({exc.filename})", file=sys.stderr)
        return 2
    header, report = result["snapshot"], result["hygiene"]
    print(
        f"{args.output}: {header['count']} embeddings, {header['model']}, "
        f"index {header['index']['kind']}, {header['hash']}"
    )
    if report is None:
        print("hygiene: not checked (over the default size; --hygiene checks it)")
    else:
        for pair in report["same_face_under_two_ids"]:
            print(
                f"hygiene: ids {pair['ids'][0]!r} and {pair['ids'][1]!r} match at strict ({pair['similarity']})"
            )
        for item in report["templates_unlike_their_id"]:
            print(
                f"hygiene: id {item['id']!r} template {item['template']} matches none of its others "
                f"at lenient (best {item['best_similarity']})"
            )
    if args.report:
        args.report.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    try:
        snapshot = open_snapshot(args.path)
    except ServiceError as exc:
        print(f"{args.path}: {exc.detail}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot read: {exc.strerror} ({exc.filename})", file=sys.stderr)
        return 2
    header = snapshot.header
    size = args.path.stat().st_size
    print(
        orjson.dumps(
            {
                "path": str(args.path),
                "bytes": size,
                "count": header["count"],
                "persons": len(set(snapshot.ids)),
                "model": header["model"],
                "hash": header["hash"],
                "built_at": header["built_at"],
                "index": header["index"].get("kind"),
            },
            option=orjson.OPT_INDENT_2,
        ).decode()
    )
    snapshot.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m face_recognition_service.gallery")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="build a snapshot from JSON Lines or an /embed/batch answer")
    make.add_argument("--input", type=Path, required=True)
    make.add_argument("--output", type=Path, required=True)
    make.add_argument("--report", type=Path, help="also write the hygiene report as JSON")
    make.add_argument(
        "--hygiene",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: on up to 50,000 embeddings",
    )
    look = commands.add_parser("inspect", help="size, model and hash of a snapshot (checks it whole)")
    look.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    return _build(args) if args.command == "build" else _inspect(args)


if __name__ == "__main__":
    sys.exit(main())
