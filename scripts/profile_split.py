#!/usr/bin/env python3
"""Where one request's CPU goes: a folded profile (scripts/profile.sh) split into parts, in
microseconds per request (#18).

Usage: profile_split.py FOLDED US_PER_REQUEST

Each sample goes to the part of its deepest frame that names one (scanning from the leaf), so
an allocation inside the JWT check counts as authentication and a system call made by the
Redis client counts as the kernel. Parts, in the order they are looked for:

  kernel       system calls (socket reads and writes, epoll): the same per request on any server
  auth         access-token and pass verification (auth::hs256, jsonwebtoken, the memo)
  redis        the Redis client, the batcher and the connection wrapper
  postgres     sqlx and the database guard
  json         serde (request bodies, response documents)
  handler      the rest of the handlers' own code (floodgate_app::<domain>)
  routing      axum's router and matchit
  middleware   the tower layers around the routes (request id, trace, observe, timeouts, ...)
  http         hyper's HTTP/1 parsing, encoding and connection loop
  runtime      tokio's scheduler, timers and wakers
  other        anything else (allocator or libc frames with no caller named above)
"""
import re
import sys

PARTS = [
    ("kernel", r"entry_SYSCALL|^syscall$|__libc_(send|recv|write|read)|epoll_wait"),
    ("auth", r"auth::hs256|auth::verified|auth::extract|jsonwebtoken|hmac|sha2::"),
    ("redis", r"^<?redis::|redis_conn|platform::batch|platform::redis|combine::"),
    ("postgres", r"sqlx|platform::db"),
    ("json", r"serde"),
    ("handler", r"floodgate_app::(?!http::)|axum::handler|axum::extract|axum_core::extract"),
    ("routing", r"axum::routing|matchit"),
    ("middleware", r"tower_http|tower::|floodgate_app::http::|HandleError|axum::util::MapIntoResponse"),
    ("http", r"hyper|httparse"),
    ("runtime", r"tokio::"),
]
COMPILED = [(name, re.compile(rx)) for name, rx in PARTS]


def part_of(frames):
    for frame in reversed(frames):
        for name, rx in COMPILED:
            if rx.search(frame):
                return name
    return "other"


def split(lines):
    counts, total = {}, 0
    for line in lines:
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack:
            continue
        n = int(n)
        total += n
        part = part_of(stack.split(";"))
        counts[part] = counts.get(part, 0) + n
    return counts, total


def main():
    path, us = sys.argv[1], float(sys.argv[2])
    with open(path) as f:
        counts, total = split(f)
    if not total:
        sys.exit(f"{path}: no samples")
    for name in [p for p, _ in PARTS] + ["other"]:
        share = counts.get(name, 0) / total
        print(f"  {name:11s} {share * us:5.1f} us  {100 * share:4.1f} %")


if __name__ == "__main__":
    main()
