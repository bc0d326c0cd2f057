"""Shared plumbing of the test brokers: a Flask app around an openbrokerapi
ServiceBroker that appends every request it receives, as one JSON line, to a
log file the Rust test reads; it listens on a free loopback port and prints
"PORT <n>" once it accepts connections."""

import argparse
import base64
import json
import logging
import sys
import threading

from flask import Flask, request
from openbrokerapi import api
from werkzeug.serving import make_server

_log_lock = threading.Lock()


def _decode_identity(header):
    """The originating identity header as {"platform", "value"}, or the raw
    header when it does not decode (the test then sees what arrived)."""
    if header is None:
        return None
    try:
        platform, value = header.split(" ", 1)
        return {"platform": platform, "value": json.loads(base64.b64decode(value, validate=True))}
    except Exception:  # noqa: BLE001 - record anything that arrives
        return {"raw": header}


def _record(path):
    body = request.get_data(as_text=True)
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = {"unparsed": body}
    auth = request.authorization
    entry = {
        "method": request.method,
        "path": request.path,
        "query": request.args.to_dict(),
        "body": parsed,
        "api_version": request.headers.get("X-Broker-API-Version"),
        "originating_identity": _decode_identity(request.headers.get("X-Broker-API-Originating-Identity")),
        "request_identity": request.headers.get("X-Broker-API-Request-Identity"),
        "content_type": request.headers.get("Content-Type"),
        "auth_user": auth.username if auth else None,
        "auth_password": auth.password if auth else None,
    }
    with _log_lock:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def serve(broker, retry_after_seconds=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--log", required=True, help="JSON-lines file of received calls")
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args()

    app = Flask(broker.__class__.__name__)
    app.before_request(lambda: _record(args.log))

    if retry_after_seconds is not None:

        @app.after_request
        def retry_after(response):
            if request.path.endswith("/last_operation") and response.status_code == 200:
                response.headers["Retry-After"] = str(retry_after_seconds)
            return response

    logger = logging.getLogger("test-broker")
    credentials = api.BrokerCredentials(args.username, args.password)
    app.register_blueprint(api.get_blueprint(broker, credentials, logger))

    server = make_server("127.0.0.1", 0, app, threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)
