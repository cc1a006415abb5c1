#!/usr/bin/env python3
"""Bearer-token issuer for a CNCF distribution registry configured with `auth.token`.

usage: token-server.py PORT KEY CERT [USER:PASS|-] [REQUEST_LOG]

  PORT        listen on 127.0.0.1:PORT
  KEY, CERT   the RSA signing key and its (self-signed) certificate; the registry's
              `rootcertbundle` must be CERT
  USER:PASS   credentials to require. Callers sending Basic auth with the wrong password get
              401 + a JSON error body. Anonymous callers get a token with NO access (so an
              anonymous pull fails at the registry with 401), unless TOKEN_ANON_PULL=1, which
              grants them `pull`. "-" or omitted: everybody gets every action asked for.
  REQUEST_LOG append one JSON line per request (method, path, account, status, granted access)

Endpoints: GET /token?service=S&scope=repository:NAME:pull,push[&scope=...][&account=U]
           POST /token (OAuth2 form: grant_type=password, username, password, service, scope)
Response: {"token": JWT, "access_token": JWT, "expires_in": TTL, "issued_at": RFC3339}
JWT: RS256 (signed with the `openssl` CLI), header carries x5c = [DER of CERT]; claims iss, sub,
aud (= service), exp, nbf, iat, jti, access.

Environment: TOKEN_ISSUER (test-issuer), TOKEN_SERVICE (test-registry, used when the request has
no service), TOKEN_TTL seconds (300), TOKEN_ANON_PULL (0).
Stdlib only, plus the openssl binary.
"""
import base64
import binascii
import datetime
import hmac
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ISSUER = os.environ.get("TOKEN_ISSUER", "test-issuer")
DEFAULT_SERVICE = os.environ.get("TOKEN_SERVICE", "test-registry")
TTL = int(os.environ.get("TOKEN_TTL", "300"))
ANON_PULL = os.environ.get("TOKEN_ANON_PULL", "0") == "1"
ALL_ACTIONS = ("pull", "push", "delete", "*")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Issuer:
    def __init__(self, key_path, cert_path):
        self.key_path = key_path
        with open(cert_path, encoding="ascii") as f:
            pem = f.read()
        der = ssl.PEM_cert_to_DER_cert(pem)
        self.x5c = [base64.b64encode(der).decode("ascii")]

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-binary", "-sign", self.key_path],
            input=signing_input.encode("ascii"),
            capture_output=True,
            check=True,
        ).stdout
        return signing_input + "." + b64url(sig)


def parse_scope(scope: str):
    """'repository:NAME:pull,push' -> ('repository', NAME, ['pull', 'push']).
    Split the type at the first ':' and the actions at the last one."""
    if ":" not in scope:
        return None
    typ, rest = scope.split(":", 1)
    if ":" not in rest:
        return None
    name, actions = rest.rsplit(":", 1)
    return typ, name, [a for a in actions.split(",") if a]


class Handler(BaseHTTPRequestHandler):
    server_version = "spxpack-test-token/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet default access log (we write our own)
        pass

    def _record(self, status, account, access, note=""):
        cfg = self.server.cfg
        if not cfg["log"]:
            return
        line = json.dumps(
            {
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                "method": self.command,
                "path": self.path,
                "account": account,
                "status": status,
                "access": access,
                "note": note,
            },
            separators=(",", ":"),
        )
        with cfg["lock"], open(cfg["log"], "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _send_json(self, status, obj, extra_headers=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _unauthorized(self, account, msg):
        self._record(401, account, None, msg)
        self._send_json(
            401,
            {"errors": [{"code": "UNAUTHORIZED", "message": msg, "detail": None}]},
            [("WWW-Authenticate", 'Basic realm="test-token-server"')],
        )

    def _basic_credentials(self):
        h = self.headers.get("Authorization", "")
        if not h.lower().startswith("basic "):
            return None
        try:
            raw = base64.b64decode(h[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ("", "\0invalid")
        user, _, pw = raw.partition(":")
        return user, pw

    def _issue(self, params, creds):
        cfg = self.server.cfg
        service = (params.get("service") or [DEFAULT_SERVICE])[0]
        scopes = []
        for s in params.get("scope", []):
            scopes.extend(s.split(" "))  # RFC 6749 allows space-separated scopes
        account = None
        if cfg["user"] is not None:
            if creds is not None:
                user, pw = creds
                ok = hmac.compare_digest(user.encode(), cfg["user"].encode()) and hmac.compare_digest(
                    pw.encode(), cfg["password"].encode()
                )
                if not ok:
                    return self._unauthorized(user, "invalid username/password")
                account = user
                allowed = ALL_ACTIONS
            else:
                allowed = ("pull",) if ANON_PULL else ()
        else:
            account = creds[0] if creds else None
            allowed = ALL_ACTIONS

        access = []
        for s in scopes:
            parsed = parse_scope(s)
            if not parsed:
                continue
            typ, name, actions = parsed
            granted = [a for a in actions if a in allowed]
            if granted:
                access.append({"type": typ, "name": name, "actions": granted})

        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": account or "",
            "aud": service,
            "exp": now + TTL,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        try:
            token = self.server.issuer.sign(claims)
        except subprocess.CalledProcessError as e:
            self._record(500, account, None, "signing failed")
            return self._send_json(500, {"errors": [{"code": "UNKNOWN", "message": "signing failed: %s" % e.stderr.decode(errors="replace")}]})
        issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._record(200, account, access)
        self._send_json(200, {"token": token, "access_token": token, "expires_in": TTL, "issued_at": issued})

    def do_GET(self):
        u = urlsplit(self.path)
        if u.path != "/token":
            self._record(404, None, None)
            return self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
        self._issue(parse_qs(u.query), self._basic_credentials())

    def do_POST(self):
        u = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace") if length else ""
        if u.path != "/token":
            self._record(404, None, None)
            return self._send_json(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
        form = parse_qs(body)
        grant = (form.get("grant_type") or [""])[0]
        if grant != "password":
            self._record(400, None, None, "unsupported grant_type %r" % grant)
            return self._send_json(400, {"error": "unsupported_grant_type"})
        creds = ((form.get("username") or [""])[0], (form.get("password") or [""])[0])
        self._issue(form, creds)


def main(argv):
    if len(argv) not in (4, 5, 6):
        sys.stderr.write(__doc__)
        return 2
    port, key, cert = int(argv[1]), argv[2], argv[3]
    userpass = argv[4] if len(argv) > 4 else "-"
    user = password = None
    if userpass != "-":
        if ":" not in userpass:
            sys.stderr.write("USER:PASS must contain ':'\n")
            return 2
        user, password = userpass.split(":", 1)
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    httpd.issuer = Issuer(key, cert)
    httpd.cfg = {"user": user, "password": password, "log": argv[5] if len(argv) > 5 else None, "lock": threading.Lock()}
    print("token server listening on 127.0.0.1:%d" % port, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
