"""A webhook receiver for Alertmanager: each POST to /<receiver> is appended as one JSON line
to <dir>/<receiver>.jsonl (default dir /alerts). Used by docker compose's `alert-sink` and by
the alert-routing drill of `make deploy-check`; stdlib only.

    python3 sink.py [--port 9095] [--dir /alerts]
"""

import argparse
import json
import os
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=9095)
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--dir", default="/alerts")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            name = self.path.strip("/")
            length = int(self.headers.get("Content-Length") or 0)
            if not re.fullmatch(r"[a-z0-9_-]{1,64}", name) or length > MAX_BODY:
                self.send_error(400, "POST /<receiver> with a JSON body of at most 1 MiB")
                return
            try:
                body = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_error(400, "body is not JSON")
                return
            with open(os.path.join(args.dir, name + ".jsonl"), "a", encoding="utf-8") as f:
                f.write(json.dumps(body, separators=(",", ":")) + "\n")
            self.send_response(200)
            self.end_headers()

        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *_):
            pass

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
