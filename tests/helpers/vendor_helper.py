#!/usr/bin/env python3
"""Behaves like the vendor's installed ProxyCommand helper (front B), standard library only.

    vendor_helper.py --proxy HOST:PORT --token-file FILE [--cafile PEM] [--insecure]
    vendor_helper.py --api URL --api-key KEY --workload HOST --public-key PUB
                     [--cert-out CERT] [--api-cafile PEM] [--sign-only] [--cafile PEM] [--proxy HOST:PORT]

TLS to the proxy with SNI = the proxy's host part (none when it is an IP address), a 4-byte
big-endian length and the JWT, then exactly one status byte read with recv(1) (10 s socket
timeout), then a selectors loop pumping stdin/stdout <-> socket with 64 KiB reads. It closes
without TLS close_notify, as the real helper does.

With --api it first gets a certificate and a token from the signing API (`ssh-edge issuer`)
the way the installed helper does, with urllib and `Authorization: Api-Key KEY`: for a
`training-job-<job>-<node>` host `POST /v1/training_jobs/search {"job_id"}`, then
`POST /v1/training_projects/<project>/jobs/<job>/ssh/sign {"public_key", "replica_id"}`; for a
`model-<model>-<deployment>[-<replica>]` host `POST /v1/models/<model>/deployments/<deployment>/ssh/sign`.
The certificate is written atomically next to the key (`<key>-cert.pub`, or --cert-out), then
the helper connects to the answer's `proxy_address` (unless --proxy is given) with its `jwt`.
--sign-only stops after writing the certificate. Note that ssh reads CertificateFile right after
starting the ProxyCommand, so a certificate written by the ProxyCommand is certain to be used
only from the next connection on; sign once beforehand (--sign-only) for the first one.
"""
import argparse
import ipaddress
import json
import os
import re
import selectors
import socket
import ssl
import struct
import sys
import tempfile
import urllib.error
import urllib.request


def api_call(args, path, body):
    """POST `body` as JSON to the signing API; returns the decoded answer or exits 1."""
    ctx = ssl.create_default_context(cafile=args.api_cafile) if args.api.startswith("https:") else None
    req = urllib.request.Request(
        args.api.rstrip("/") + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": "Api-Key " + args.api_key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("error", "")
        except ValueError:
            message = ""
        sys.stderr.write(f"signing API error {e.code}: {message}\n")
        sys.exit(1)


def sign(args):
    """Search (training jobs) and sign; writes the certificate, returns the sign answer."""
    label = args.workload.split(".", 1)[0]
    public_key = open(args.public_key).read().strip()
    job = re.fullmatch(r"training-job-(.+)-(\d+)", label)
    model = re.fullmatch(r"model-([a-z0-9]+)-([a-z0-9]+)(?:-(\d+))?", label)
    if job:
        job_id, node = job.groups()
        found = api_call(args, "/v1/training_jobs/search", {"job_id": job_id})
        project_id = found["training_jobs"][0]["training_project"]["id"]
        answer = api_call(
            args,
            f"/v1/training_projects/{project_id}/jobs/{job_id}/ssh/sign",
            {"public_key": public_key, "replica_id": node},
        )
    elif model:
        model_id, deployment_id, replica = model.groups()
        body = {"public_key": public_key}
        if replica is not None:
            body["replica_id"] = replica
        answer = api_call(args, f"/v1/models/{model_id}/deployments/{deployment_id}/ssh/sign", body)
    else:
        sys.stderr.write(f"not a workload host name: {args.workload}\n")
        sys.exit(1)
    cert_out = args.cert_out or re.sub(r"\.pub$", "", args.public_key) + "-cert.pub"
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(cert_out)), prefix=".cert-")
    with os.fdopen(fd, "w") as f:
        f.write(answer["ssh_certificate"].strip() + "\n")
    os.replace(tmp, cert_out)
    return answer


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proxy")
    ap.add_argument("--token-file")
    ap.add_argument("--cafile")
    ap.add_argument("--insecure", action="store_true", help="plain TCP, no TLS")
    ap.add_argument("--api", help="signing API base URL: sign first, then connect")
    ap.add_argument("--api-key")
    ap.add_argument("--api-cafile")
    ap.add_argument("--workload", help="workload host name (ssh's %%h)")
    ap.add_argument("--public-key", help="the user's public key file (id_ed25519.pub)")
    ap.add_argument("--cert-out", help="where to write the certificate (default <key>-cert.pub)")
    ap.add_argument("--sign-only", action="store_true")
    args = ap.parse_args()

    if args.api:
        for name in ("api_key", "workload", "public_key"):
            if getattr(args, name) is None:
                ap.error(f"--api needs --{name.replace('_', '-')}")
        answer = sign(args)
        if args.sign_only:
            return 0
        args.proxy = args.proxy or answer["proxy_address"]
        token = answer["jwt"].encode()
    else:
        if not args.proxy or not args.token_file:
            ap.error("--proxy and --token-file are required (or use --api)")
        token = open(args.token_file, "rb").read().strip()
    host, port = args.proxy.rsplit(":", 1)
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
