"""``seqlab serve RUN [RUN ...]``: an HTTP API and a web playground for trained runs.

    seqlab serve runs/shakespeare runs/rev runs/chunk        # http://127.0.0.1:8000/
    seqlab serve lm=runs/shakespeare --port 8080 --limit max_streams=16

The runs are loaded and checked before the server listens: a missing folder or a corrupt
checkpoint is a one-line error. The app is `seqlab.serve.app.create_app`; the limits are
`seqlab.serve.config.ServeConfig`. FastAPI and uvicorn are imported only by this command.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

from seqlab.errors import SeqlabError


def register(sub: Any) -> dict[str, Any]:
    s = sub.add_parser("serve", help="serve runs over HTTP, with a web playground at /")
    s.add_argument("runs", nargs="+", metavar="RUN", help="run folder, or NAME=RUN_FOLDER")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free)")
    s.add_argument("--limit", action="append", default=[], metavar="KEY=VALUE",
                   help="a server limit, e.g. max_streams=16 (keys: seqlab.serve.config)")
    s.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: cpu)")
    s.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    s.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    return {"serve": cmd_serve}


def parse_limits(items: list[str]) -> Any:
    """``key=value`` items -> `ServeConfig` (unknown keys and bad values are errors)."""
    from seqlab.config import from_dict, parse_value
    from seqlab.serve.config import ServeConfig

    raw = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise SeqlabError(f"--limit: expected KEY=VALUE, got {item!r}")
        raw[key.removeprefix("limit.")] = parse_value(value)
    return from_dict(ServeConfig, raw, prefix="limit.")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened before the server starts: a busy port is a one-line
    error."""
    if not 0 <= port <= 65535:
        raise SeqlabError(f"--port: expected 0..65535, got {port}")
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
    except OSError as e:
        raise SeqlabError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def cmd_serve(args: argparse.Namespace) -> int:
    limits = parse_limits(args.limit)
    if args.threads is not None:
        import torch

        if args.threads < 1:
            raise SeqlabError(f"--threads: expected at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    from seqlab.serve.runs import load_runs

    runs = load_runs(args.runs, args.device)  # every check before anything listens
    try:
        import uvicorn

        from seqlab.serve.app import create_app
    except ModuleNotFoundError as e:
        raise SeqlabError(f"seqlab serve needs {e.name}; install fastapi and uvicorn") from None
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {', '.join(runs)} on http://{shown}:{port}/ (API: /docs)", file=sys.stderr,
          flush=True)
    config = uvicorn.Config(create_app(runs, limits), log_level=args.log_level,
                            timeout_graceful_shutdown=2)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
