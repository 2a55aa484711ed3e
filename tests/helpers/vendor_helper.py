#!/usr/bin/env python3
"""Behaves like the vendor's installed ProxyCommand helper (front B), standard library only.

    vendor_helper.py --proxy HOST:PORT --token-file FILE [--cafile PEM] [--insecure]

TLS to the proxy with SNI = the proxy's host part (none when it is an IP address), a 4-byte
big-endian length and the JWT, then exactly one status byte read with recv(1) (10 s socket
timeout), then a selectors loop pumping stdin/stdout <-> socket with 64 KiB reads. It closes
without TLS close_notify, as the real helper does.
"""
import argparse
import ipaddress
import os
import selectors
import socket
import ssl
import struct
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy", required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--cafile")
    ap.add_argument("--insecure", action="store_true", help="plain TCP, no TLS")
    args = ap.parse_args()

    host, port = args.proxy.rsplit(":", 1)
    token = open(args.token_file, "rb").read().strip()
    raw = socket.create_connection((host, int(port)), timeout=10)
    if args.insecure:
        sock = raw
    else:
        ctx = ssl.create_default_context(cafile=args.cafile)
        try:
            ipaddress.ip_address(host)
            server_hostname = None  # no SNI for an IP address, like the real helper
            ctx.check_hostname = False
        except ValueError:
            server_hostname = host
        sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
    sock.sendall(struct.pack(">I", len(token)) + token)
    status = sock.recv(1)
    if status != b"\x00":
        sys.stderr.write("SSH proxy rejected the connection. Is the workload and SSH server running?\n")
        return 1
    sock.settimeout(None)

    sel = selectors.DefaultSelector()
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sel.register(stdin, selectors.EVENT_READ, "stdin")
    sel.register(sock, selectors.EVENT_READ, "sock")
    while True:
        for key, _ in sel.select():
            if key.data == "stdin":
                data = os.read(stdin, 65536)
                if not data:
                    sel.unregister(stdin)
                    try:
                        raw.shutdown(socket.SHUT_WR) if args.insecure else None
                    except OSError:
                        pass
                    continue
                sock.sendall(data)
            else:
                try:
                    data = sock.recv(65536)
                except (ssl.SSLError, OSError):
                    data = b""
                if not data:
                    return 0
                os.write(stdout, data)


if __name__ == "__main__":
    sys.exit(main())
