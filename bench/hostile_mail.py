"""How long toma takes to read hostile messages, one of each shape, at n and 4n.

    .venv/bin/python bench/hostile_mail.py [--scale 1.0]

Prints, per shape, the size and the seconds one reading takes at n and at 4n,
and their ratio: about 4 where the cost is linear, about 1 where a bound caps
it; a quadratic path would show 16. The sizes at scale 1 are those of the
issue that prompted the bounds (200,000 header fields, 200,000 encoded words).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from toma.core.reading.classify import read_message

HEAD = (
    "From: Ann <ann@example.org>\r\nTo: alex@example.com\r\n"
    "Date: Tue, 03 Mar 2026 09:00:00 +0100\r\nMessage-ID: <b@example.org>\r\n"
)
BOUNCE = (
    "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: alex@example.com\r\n"
    "Subject: Undelivered Mail Returned to Sender\r\n"
)


def shapes() -> dict[str, Callable[[int], bytes]]:
    return {
        "distinct header fields": lambda n: (
            HEAD
            + "Subject: hi\r\n"
            + "".join(f"X-F{i}: v{i}\r\n" for i in range(n))
            + "\r\nHello\r\n"
        ).encode(),
        "encoded words in the subject": lambda n: (
            HEAD
            + "Subject: "
            + " ".join("=?utf-8?q?w=C3=A4rt?=" for _ in range(n))
            + "\r\n\r\nHello\r\n"
        ).encode(),
        "MIME parts": lambda n: (
            HEAD
            + 'Subject: hi\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * (n // 4)
            + "--b--\r\n"
        ).encode(),
        "MIME nesting": lambda n: (
            HEAD
            + "Subject: hi\r\n"
            + "".join(
                f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
                for i in range(n // 40)
            )
            + "Content-Type: text/plain\r\n\r\nx\r\n"
        ).encode(),
        "attribution-like lines": lambda n: (
            HEAD + "Subject: hi\r\n\r\n" + ("<@>" * 100 + "\r\n") * (n // 100)
        ).encode(),
        "a bounce keyword repeated": lambda n: (
            BOUNCE + "\r\ncould not be delivered\r\n" + "mailbox" * (n // 4)
        ).encode(),
        "empty lines in a bounce": lambda n: (
            BOUNCE + "\r\ncould not be delivered\r\n" + "\r\n" * n
        ).encode(),
        "HTML: unclosed comments": lambda n: (
            HEAD + "Subject: hi\r\nContent-Type: text/html\r\n\r\n" + "<!--" * (n // 4)
        ).encode(),
        "HTML: stray end tags": lambda n: (
            HEAD
            + "Subject: hi\r\nContent-Type: text/html\r\n\r\n"
            + "<a>" * (n // 8)
            + "</b>" * (n // 8)
        ).encode(),
        "out-of-office of dates": lambda n: (
            HEAD
            + "Subject: Out of Office\r\nAuto-Submitted: auto-replied\r\n\r\n"
            + "back on 12/10 " * (n // 10)
        ).encode(),
    }


def seconds(data: bytes) -> float:
    start = time.perf_counter()
    read_message(data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="n = 200,000 x scale")
    args = parser.parse_args()
    n = int(200_000 * args.scale)
    print(f"{'shape':<32}{'MB at n':>9}{'s at n':>9}{'s at 4n':>9}{'ratio':>7}")
    for name, build in shapes().items():
        small, big = build(n), build(4 * n)
        at_n, at_4n = seconds(small), seconds(big)
        ratio = at_4n / at_n if at_n > 0 else float("nan")
        print(f"{name:<32}{len(small) / 1e6:>9.2f}{at_n:>9.3f}{at_4n:>9.3f}{ratio:>7.1f}")


if __name__ == "__main__":
    main()
