#!/usr/bin/env python3
"""Mints HS256 access tokens for user ids read from stdin (one per line), for the bench's
many-user workloads: signing up 100,000 users through argon2 would measure argon2. The
header is byte for byte the one the app writes (`typ` first), as on a token from its login:
the app verifies its own header on a fast path (app/src/auth/hs256.rs).
Usage: bench_tokens.py SECRET < ids > tokens"""
import base64
import hashlib
import hmac
import json
import sys
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    secret = sys.argv[1].encode()
    now = int(time.time())
    header = b64(json.dumps({"typ": "JWT", "alg": "HS256"}, separators=(",", ":")).encode())
    out = sys.stdout
    for line in sys.stdin:
        uid = line.strip()
        if not uid:
            continue
        claims = {"sub": uid, "roles": ["customer"], "iat": now, "exp": now + 3600,
                  "iss": "floodgate", "aud": "floodgate-api"}
        body = b64(json.dumps(claims, separators=(",", ":")).encode())
        sig = b64(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
        out.write(f"{header}.{body}.{sig}\n")


if __name__ == "__main__":
    main()
