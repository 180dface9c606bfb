"""``xtalscreen web``: serve the drop-scoring web app (plate views, ranked list, Cinder, admin)."""

from __future__ import annotations

import os

from xtalscreen.cli import add_command
from xtalscreen.errors import InputError, ParameterError


def _secret(args) -> str | None:
    if args.secret_key_file:
        try:
            key = open(args.secret_key_file, encoding="utf-8").read().strip()
        except OSError as exc:
            raise InputError(f"cannot read the secret key: {exc.strerror or exc}",
                             path=args.secret_key_file) from None
        if len(key) < 16:
            raise InputError("the secret key must have at least 16 characters "
                             "(make one with 'openssl rand -hex 32')", path=args.secret_key_file)
        return key
    return os.environ.get("XTALSCREEN_SECRET_KEY") or None


def run(args) -> int:
    import uvicorn

    from xtalscreen.web import create_app

    if not 0 < args.port < 65536:
        raise ParameterError(f"--port must be 1..65535, got {args.port}")
    key = _secret(args)  # None: create_app warns and uses a random key
    app = create_app(args.db, secret_key=key, thumb_cache=args.thumb_cache,
                     max_upload_bytes=int(args.max_upload_mib * 2 ** 20),
                     cookie_secure=args.secure_cookies)
    print(f"serving {args.db} on http://{args.host}:{args.port}/ (Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def register(sub) -> None:
    from xtalscreen.cli.drops_cmd import _db_arg

    p = add_command(
        sub, "web", help="serve the drop-scoring web app (plate views, Cinder, admin)",
        description="Serve the drop-scoring web app over the drop database: plate views with "
                    "score-coloured borders (human scores over the top half, the machine score "
                    "underneath, from 9 o'clock), a ranked list of the drops most likely to hold "
                    "crystals, Cinder (one queued image at a time, one-key scoring, no other "
                    "scores shown before yours) and an admin page (consensus rule, class colours, "
                    "scheme upload, plate sharing). Users are added with 'xtalscreen drops "
                    "adduser'. Put it behind an HTTPS reverse proxy for use beyond one machine "
                    "(and pass --secure-cookies).",
        examples="  xtalscreen drops adduser alice --role admin --db drops.sqlite\n"
                 "  xtalscreen web --db drops.sqlite --port 8000\n"
                 "  XTALSCREEN_SECRET_KEY=$(openssl rand -hex 32) xtalscreen web "
                 "--db postgresql+psycopg://me@dbhost/c3 --host 0.0.0.0\n")
    _db_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--secret-key-file", metavar="FILE",
                   help="file holding the key that signs session cookies (default: "
                        "$XTALSCREEN_SECRET_KEY, else a random key per start)")
    p.add_argument("--thumb-cache", metavar="DIR",
                   help="thumbnail cache folder (default: <database file>.thumbs/ for SQLite, "
                        "else a temporary folder)")
    p.add_argument("--max-upload-mib", type=float, default=1.0,
                   help="largest request body accepted, MiB")
    p.add_argument("--secure-cookies", action="store_true",
                   help="mark the session cookie Secure (when served over HTTPS)")
    p.set_defaults(func=run)


# ----------------------------------------------------------------------------- drops sub-commands
def _read_password(args) -> str:
    import getpass
    import sys

    if args.password_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        pw = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != pw:
            raise ParameterError("the two passwords differ; nothing was changed")
    return pw


def run_adduser(args) -> int:
    from xtalscreen.drops.db import connect, db_errors, require_schema, session_scope
    from xtalscreen.web.auth import add_user, check_role, check_user_name

    check_user_name(args.name)
    check_role(args.role)
    password = _read_password(args)
    engine = connect(args.db, must_exist=True)
    try:
        require_schema(engine)
        with db_errors(engine, "write"), session_scope(engine, write=True) as session:
            user = add_user(session, args.name, role=args.role, password=password, update=args.update)
            role = user.role.value
    finally:
        engine.dispose()
    print(f"{'updated' if args.update else 'added'} user {args.name} (role {role})")
    return 0


def run_share(args) -> int:
    from xtalscreen.drops.db import connect, db_errors, require_schema, session_scope
    from xtalscreen.web.auth import share_plate

    engine = connect(args.db, must_exist=True)
    try:
        require_schema(engine)
        with db_errors(engine, "write"), session_scope(engine, write=True) as session:
            new = share_plate(session, args.barcode, args.user)
    finally:
        engine.dispose()
    print(f"plate {args.barcode} {'is now shared with' if new else 'was already visible to'} {args.user}")
    return 0


def run_ashes(args) -> int:
    from xtalscreen.drops.ashes import queue_ashes

    since = None if args.since in ("all", "") else args.since
    rep = queue_ashes(args.db, since=since, uncertain=args.uncertain)
    print(rep.summary())
    return 0


def run_export(args) -> int:
    import sys

    from xtalscreen.drops.export import export_training

    rep = export_training(args.db, args.out, split=args.split)
    for uri, reason in rep.bad:
        print(f"skipped {uri}: {reason}", file=sys.stderr)
    print(rep.summary())
    return 0


def register_drops_commands(dsub) -> None:
    """Add ``drops adduser``, ``drops share``, ``drops ashes`` and ``drops export-training``."""
    from xtalscreen.cli.drops_cmd import _db_arg

    q = add_command(
        dsub, "adduser", help="add a web-app user (admin, scorer or owner)",
        description="Add a user of the web app. Roles: admin (sees every plate; changes class "
                    "schemes, colours, the consensus rule and plate shares), scorer (sees the "
                    "plates it owns or that are shared with it; scores in Cinder), owner (sees "
                    "its own and shared plates). A plate's owner is the 'owner' of the import. "
                    "The password is asked twice, or read from one line of stdin.",
        examples="  xtalscreen drops adduser alice --role admin --db drops.sqlite\n"
                 "  echo 's3cret-pass' | xtalscreen drops adduser bob --role scorer --password-stdin\n"
                 "  xtalscreen drops adduser bob --role owner --update\n")
    _db_arg(q)
    q.add_argument("name", help="user name (as in plate owners and score records)")
    q.add_argument("--role", required=True, choices=["admin", "scorer", "owner"], help="what the user may do")
    q.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    q.add_argument("--update", action="store_true", help="change an existing user's role and password")
    q.set_defaults(func=run_adduser)

    q = add_command(
        dsub, "share", help="let a user see a plate it does not own",
        description="Share plate BARCODE with user USER in the web app (admins see every plate).",
        examples="  xtalscreen drops share PLATE0001 bob --db drops.sqlite\n")
    _db_arg(q)
    q.add_argument("barcode")
    q.add_argument("user")
    q.set_defaults(func=run_share)

    q = add_command(
        dsub, "ashes", help="queue human/machine disagreements for Cinder consensus scoring",
        description="Ashes (paper 000, section 6): queue for Cinder every image whose latest human "
                    "score (as its MARCO class) differs from its latest machine score, among "
                    "images scored within --since; --uncertain N also queues the N images the "
                    "model is least sure about (lowest top probability). Images already queued "
                    "or agreed are left alone. Run it weekly (cron).",
        examples="  xtalscreen drops ashes --db drops.sqlite\n"
                 "  xtalscreen drops ashes --since 30d --uncertain 50\n"
                 "  xtalscreen drops ashes --since all\n")
    _db_arg(q)
    q.add_argument("--since", default="7d",
                   help="only images scored within this period (30m, 12h, 7d, 2w) or 'all'")
    q.add_argument("--uncertain", type=int, default=0, metavar="N",
                   help="also queue the N least certain machine scores")
    q.set_defaults(func=run_ashes)

    q = add_command(
        dsub, "export-training", help="write consensus-labelled images as a training set",
        description="Copy every image with a consensus label (Cinder) into DIR/<class>/ "
                    "(crystal, precipitate, clear, other), the MARCO folder layout; with --split "
                    "train into DIR/train/<class>/, the tree 'xtalscreen train' reads, to "
                    "fine-tune the current model. Running it again copies only new images.",
        examples="  xtalscreen drops export-training agreed/ --db drops.sqlite\n"
                 "  xtalscreen drops export-training data/ --split train\n")
    _db_arg(q)
    q.add_argument("out", metavar="DIR", help="output folder")
    q.add_argument("--split", default=None, help="write under DIR/SPLIT/ (e.g. train)")
    q.set_defaults(func=run_export)
